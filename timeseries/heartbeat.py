"""Which APs reported in a time range and how often, from ``ap_heartbeat`` (contracts, 6)."""

from __future__ import annotations

import pandas as pd

from timeseries import queries
from timeseries.schema import TAG_AP
from timeseries.store import TimeSeriesStore

REPORT_COLUMNS = ["ap", "reports", "events", "first_s", "last_s"]


def ap_reports(store: TimeSeriesStore, start_ns: int, end_ns: int,
               community: str | None = None) -> pd.DataFrame:
    """Per AP that reported in [start, end): reports, events in them, first and last (Unix s).

    An AP missing from the frame sent nothing at all in the range (not even an empty
    keep-alive): it was silent, which is not the same as reporting nobody there.
    """
    rows: list[list[object]] = []
    for columns, tags, values in store.query_series(*queries.heartbeats(start_ns, end_ns,
                                                                        community)):
        position = {name: i for i, name in enumerate(columns)}
        for value in values:
            rows.append([tags.get(TAG_AP, ""), *(int(value[position[name]] or 0)
                                                 for name in REPORT_COLUMNS[1:])])
    frame = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    frame = frame.astype({name: "int64" for name in REPORT_COLUMNS[1:]})
    return frame.sort_values("ap", ignore_index=True)
