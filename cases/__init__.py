"""Cases (案件) of the grid-management loop (一网统管): a broken cover, a burst main, a flooded
road is reported (上报), accepted (立案), dispatched (派遣) to the department responsible,
handled (处置), checked on site (核查) and closed (结案).

`classes` loads the 事件 classes and deadlines, `rules` the dispatch rules, `lifecycle` says
which transitions exist and who may make them, `store` creates and moves cases in the
database, `stats` counts them per area and per department.
"""

from __future__ import annotations

KINDS = ("部件", "事件")  # a component's problem, or an event
STATES = ("上报", "立案", "派遣", "处置", "核查", "结案", "作废")
TARGET = "cases"  # the collection: its read role governs who reads cases, its events and stats
