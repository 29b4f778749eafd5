-- EPANET control valves (PRV, PSV, PBV, FCV, TCV, GPV, PCV) are nodes of their own kind,
-- control_valve: they regulate flow rather than shut a main off, so valve segments let water
-- through them unless an isolation counts them as closable. Like isolation valves they carry a
-- valve_state (closed when the model fixes them shut).
ALTER TABLE twin.pipe_nodes DROP CONSTRAINT pipe_nodes_kind_check;
ALTER TABLE twin.pipe_nodes ADD CONSTRAINT pipe_nodes_kind_check CHECK (kind IN (
    'junction', 'hydrant', 'manhole', 'inlet', 'pump_station', 'fitting', 'source', 'plant',
    'reservoir', 'tank', 'regulator', 'valve', 'control_valve', 'meter', 'service', 'outfall',
    'treatment_plant'));
ALTER TABLE twin.pipe_nodes DROP CONSTRAINT pipe_nodes_check;
ALTER TABLE twin.pipe_nodes ADD CONSTRAINT pipe_nodes_valve_state_kind_check
    CHECK ((kind IN ('valve', 'control_valve')) = (valve_state IS NOT NULL));

-- Networks imported before were given their control valves as isolation valves; the EPANET
-- reader recorded the type (a valve from a valve layer says 'isolation'). The write trigger
-- keeps the old rows in the history and moves the networks' revisions on.
UPDATE twin.pipe_nodes
SET kind = 'control_valve',
    feature_code = CASE WHEN feature_code ~ '^5[0-9]{3}2201$'
                        THEN left(feature_code, 6) || '15' ELSE feature_code END
WHERE kind = 'valve'
  AND attributes ->> 'valve_type' IN ('PRV', 'PSV', 'PBV', 'FCV', 'TCV', 'GPV', 'PCV');
