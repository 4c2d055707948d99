"""Readers and LoggedData validation: every source, and the table of bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InvalidInputError
from engine.replay import ColumnMap, LoggedData, from_table, read_logs
from engine.replay.dsjson import read_dsjson
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table, write_foreign_csv


@pytest.fixture(scope="module")
def logs():
    return make_logs(LinearEnv.make(3, 2, seed=0), 60, seed=1, kind="softmax")


def test_parquet_file_directory_and_partitioned_dataset(tmp_path, logs):
    table = to_table(logs)
    pq.write_table(table, tmp_path / "one.parquet")
    one = read_logs(tmp_path / "one.parquet")
    assert one.n_rounds == 60 and one.actions == ("offer0", "offer1", "offer2")
    assert one.feature_names == ("x0", "x1")
    assert np.array_equal(one.context, logs.context)
    assert np.array_equal(one.action, logs.action)
    assert np.array_equal(one.propensity, logs.propensity)
    assert one.eligible is not None and one.eligible.all()
    assert one.timestamp is not None and one.timestamp[1] - one.timestamp[0] == 1_000_000

    folder = tmp_path / "folder"
    folder.mkdir()
    pq.write_table(table.slice(0, 25), folder / "a.parquet")
    pq.write_table(table.slice(25), folder / "b.parquet")
    assert np.array_equal(read_logs(folder).reward, logs.reward)

    hive = tmp_path / "hive"
    pq.write_to_dataset(
        table.drop_columns(["campaign"]).append_column("day", pa.array(["d1"] * 30 + ["d2"] * 30)),
        hive,
        partition_cols=["day"],
    )
    partitioned = read_logs(hive)
    assert partitioned.n_rounds == 60
    # rows come back in time order whatever the file order
    assert np.array_equal(partitioned.reward, logs.reward)


def test_an_archive_directory_whose_parts_name_more_offers_over_time(tmp_path, logs):
    """The layout `nbo journal compact` writes: campaign=NAME/date=DAY/part-*.parquet, a
    `campaign` column too, and each part's offer list as its journal had it (an offer added
    between two runs is only in the later parts' metadata)."""
    table = to_table(logs)
    root = tmp_path / "archive" / "campaign=renewal"
    for day, (start, offers) in enumerate(
        ((0, ["offer0", "offer1"]), (30, ["offer0", "offer1", "offer2"]))
    ):
        part = table.slice(start, 30)
        meta = {**part.schema.metadata, b"nbo.offer_ids": json.dumps(offers).encode()}
        (root / f"date=2024-01-0{day + 1}").mkdir(parents=True)
        pq.write_table(
            part.replace_schema_metadata(meta), root / f"date=2024-01-0{day + 1}" / "part-1.parquet"
        )
    data = read_logs(tmp_path / "archive")
    assert data.actions == ("offer0", "offer1", "offer2") and data.n_rounds == 60
    assert np.array_equal(data.action, logs.action) and data.feature_names == ("x0", "x1")
    assert read_logs(root).n_rounds == 60  # one campaign's directory reads the same


def test_pending_rewards_are_dropped_and_counted(logs):
    table = to_table(logs)
    reward = table.column("reward").to_pylist()
    reward[3] = reward[10] = None
    table = table.set_column(table.schema.get_field_index("reward"), "reward", pa.array(reward))
    data = from_table(table)
    assert data.n_rounds == 58 and data.n_pending == 2
    assert data.source_row is not None and 3 not in data.source_row.tolist()


def test_offer_order_comes_from_metadata_or_argument(logs):
    table = to_table(logs)
    meta = dict(table.schema.metadata)
    meta[b"nbo.action_ids"] = json.dumps(["offer2", "offer1", "offer0"]).encode()
    data = from_table(table.replace_schema_metadata(meta))
    assert data.actions == ("offer2", "offer1", "offer0")
    assert np.array_equal(data.action, 2 - logs.action)
    explicit = from_table(to_table(logs), actions=("offer1", "offer0", "offer2", "offer9"))
    assert explicit.n_actions == 4 and not explicit.eligible[:, 3].any()


def test_csv_with_mapped_columns(tmp_path, logs):
    path = tmp_path / "logs.csv"
    write_foreign_csv(logs, path, ("feat_age", "feat_spend"), timestamps=True)
    columns = ColumnMap.parse(
        ["action=offer", "propensity=p", "reward=-cost", "context=feat_*", "timestamp=when"]
    )
    data = read_logs(path, columns)
    assert data.feature_names == ("feat_age", "feat_spend")
    assert np.allclose(data.reward, logs.reward)
    assert np.allclose(data.context, logs.context)
    named = read_logs(
        path,
        ColumnMap.parse(
            ["action=offer", "propensity=p", "reward=-cost", "context=feat_spend,feat_age"]
        ),
    )
    assert np.allclose(named.context, logs.context[:, ::-1])


def _dsjson_event(i: int, chosen: int, cost: float | None) -> str:
    event = {
        "EventId": f"e{i}",
        "Timestamp": f"2026-01-01T00:00:{i:02d}.000Z",
        "a": [chosen + 1, 2 - chosen],
        "c": {
            "shared": {"tenure": float(i), "plan": "gold"},
            "_multi": [{"id": "renew10", "o": {"kind": "discount"}}, {"id": "none", "o": {"x": 1}}],
        },
        "p": [0.8, 0.2],
    }
    if cost is not None:
        event.update(
            _label_cost=cost,
            _label_probability=0.8 if chosen == 0 else 0.2,
            _label_Action=chosen + 1,
            _labelIndex=chosen,
        )
    return json.dumps(event)


def test_dsjson_decision_service_logs(tmp_path):
    lines = [
        _dsjson_event(0, 0, -1.0),
        _dsjson_event(1, 1, 0.0),
        _dsjson_event(2, 0, None),
        _dsjson_event(3, 1, -2.5),
    ]
    path = tmp_path / "events.json"
    path.write_text("\n".join(lines) + "\n")
    data = read_logs(path, n_features=16)
    assert data.actions == ("none", "renew10")
    assert data.action.tolist() == [1, 0, 0]
    assert data.propensity.tolist() == [0.8, 0.2, 0.2]
    assert data.reward.tolist() == [1.0, -0.0, 2.5]
    assert data.n_pending == 1 and data.n_features == 16
    assert data.decision_id.tolist() == ["e0", "e1", "e3"]
    # hashed shared features: the numeric 'tenure' value lands in one column
    assert np.count_nonzero(data.context[0] != data.context[2]) >= 1
    with pytest.raises(InvalidInputError, match=r"line 0: expected a DSJson event"):
        bad = tmp_path / "bad.json"
        bad.write_text("{not json\n")
        read_dsjson(bad)


def _table(**overrides):
    columns = {
        "decision_id": ["d0", "d1", "d2", "d3"],
        "context": pa.array(
            [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 0.5]], pa.list_(pa.float64(), 2)
        ),
        "action": ["a", "b", "a", "b"],
        "propensity": [0.5, 0.5, 0.5, 0.5],
        "reward": [1.0, 0.0, 2.0, 1.0],
        "eligible": [["a", "b"]] * 4,
    }
    columns.update(overrides)
    return pa.table(columns)


BAD_TABLES = [
    (
        dict(propensity=[0.5, 0.0, 0.5, 0.5]),
        "column 'propensity', row 1 (decision_id 'd1'): expected a probability in (0, 1], got 0.0",
    ),
    (
        dict(propensity=[0.5, 0.5, 1.5, 0.5]),
        "column 'propensity', row 2 (decision_id 'd2'): expected a probability in (0, 1], got 1.5",
    ),
    (
        dict(propensity=[0.5, 0.5, 0.5, float("nan")]),
        "column 'propensity', row 3 (decision_id 'd3'): expected a probability in (0, 1], got nan",
    ),
    (
        dict(propensity=[0.5, None, 0.5, 0.5]),
        "column 'propensity', row 1 (decision_id 'd1'): expected a number, got None",
    ),
    (
        dict(reward=[1.0, float("inf"), 0.0, 1.0]),
        "column 'reward', row 1 (decision_id 'd1'): expected a finite number, got inf",
    ),
    (
        dict(reward=[1.0, 0.0, float("nan"), 1.0]),
        "column 'reward', row 2 (decision_id 'd2'): expected a finite number, got nan",
    ),
    (
        dict(action=["a", "b", None, "b"]),
        "column 'action', row 2 (decision_id 'd2'): expected an offer id, got None",
    ),
    (
        dict(context=pa.array([[0.0, 1.0], [1.0], [1.0, 1.0], [0.5, 0.5]])),
        "column 'context', row 1 (decision_id 'd1'): expected a context of length 2 like row 0 "
        "(ragged contexts), got length 1",
    ),
    (
        dict(
            context=pa.array(
                [[0.0, 1.0], [1.0, 0.0], [1.0, float("nan")], [0.5, 0.5]], pa.list_(pa.float64(), 2)
            )
        ),
        "column 'context', row 2 (decision_id 'd2'): expected finite values, got nan",
    ),
    (
        dict(
            context=pa.array([[0.0, 1.0], [1.0, 0.0], None, [0.5, 0.5]], pa.list_(pa.float64(), 2))
        ),
        "column 'context', row 2 (decision_id 'd2'): expected a context, got None",
    ),
    (
        dict(eligible=[["a", "b"], ["a"], ["a", "b"], ["a", "b"]]),
        "column 'eligible', row 1 (decision_id 'd1'): expected the logged action among the "
        "eligible offers, got 'b'",
    ),
    (
        dict(context=pa.array(["x", "y", "z", "w"])),
        "column 'context': expected a list of float64, got string",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_TABLES)
def test_bad_data_names_column_and_first_bad_row(overrides, message):
    with pytest.raises(InvalidInputError) as info:
        from_table(_table(**overrides))
    assert str(info.value) == message


def test_unknown_action_and_missing_column():
    with pytest.raises(
        InvalidInputError,
        match=r"column 'action', row 2 \(decision_id 'd2'\): "
        r"expected an offer id in \['a', 'b'\], got 'c'",
    ):
        from_table(_table(action=["a", "b", "c", "b"]), actions=("a", "b"))
    with pytest.raises(InvalidInputError, match=r"column 'eligible', row 0 .*got 'z'"):
        from_table(_table(eligible=[["a", "z"]] + [["a", "b"]] * 3), actions=("a", "b"))
    with pytest.raises(
        InvalidInputError,
        match=r"column 'propensity': expected a column in the "
        r"source",
    ):
        from_table(_table().drop_columns(["propensity"]))


def test_logged_data_direct_construction_checks():
    ok = dict(
        context=np.zeros((2, 1)),
        action=np.array([0, 1]),
        propensity=np.ones(2),
        reward=np.zeros(2),
        actions=("a", "b"),
    )
    with pytest.raises(InvalidInputError, match="column 'action', row 1: expected an offer index"):
        LoggedData(**{**ok, "action": np.array([0, 2])})
    with pytest.raises(InvalidInputError, match="column 'reward': expected 2 rows"):
        LoggedData(**{**ok, "reward": np.zeros(3)})
    with pytest.raises(InvalidInputError, match="actions: expected distinct offer ids"):
        LoggedData(**{**ok, "actions": ("a", "a")})
    with pytest.raises(InvalidInputError, match="column 'context': expected 2 rows"):
        LoggedData(**{**ok, "context": np.zeros((3, 1))})
    with pytest.raises(InvalidInputError, match="column 'context', row 0: expected finite"):
        LoggedData(**{**ok, "context": np.array([[np.inf], [0.0]])})
    data = LoggedData(**ok)
    assert data.is_uniform() is False
    assert LoggedData(**{**ok, "propensity": np.full(2, 0.5)}).is_uniform()


def test_column_map_parse_errors():
    with pytest.raises(InvalidInputError, match="--column: expected FIELD=COLUMN"):
        ColumnMap.parse(["offer"])
    with pytest.raises(InvalidInputError, match="--column: expected FIELD=COLUMN"):
        ColumnMap.parse(["colour=red"])
