"""The live twin: sensors, their readings partitioned by time, threshold and rate alarms."""
