"""A multi-dimensional campaign over gRPC: Decide and DecideBatch answer the offer in offer_id
and every dimension's value in choices; rewards join by decision id; a campaign without
dimensions answers as before (no choices, no action)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from engine.client import NboClient
from engine.serving.server import NboServer
from tests.engine.serving.support import RENEWAL, admin_client, customer, running_server

CHANNELS = RENEWAL.parent / "renewal_channels.toml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NboServer]:
    root = tmp_path_factory.mktemp("dimensions")
    with running_server(root, campaigns=(RENEWAL, CHANNELS)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: NboServer) -> Iterator[NboClient]:
    with admin_client(server) as c:
        yield c


def test_decide_answers_the_offer_and_every_dimension(client):
    d = client.decide("c1", customer(1), campaign="renewal_channels")
    assert set(d.choices) == {"offer", "channel", "timing"}
    assert d.offer_id == d.choices["offer"]
    assert d.action == "+".join(d.choices[k] for k in ("offer", "channel", "timing"))
    assert d.action in {o for o, _ in d.ranking} and 0 < d.propensity <= 1
    assert client.reward(d.decision_id, 420.0, campaign="renewal_channels") is True


def test_candidates_may_name_values_and_unknown_ones_are_refused(client):
    d = client.decide(
        "c2", customer(2), ["channel=email", "channel=sms"], campaign="renewal_channels"
    )
    assert d.choices["channel"] in {"email", "sms"}
    with pytest.raises(grpc.RpcError) as err:
        client.decide("c2", customer(2), ["channel=fax"], campaign="renewal_channels")
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "candidates[0]" in err.value.details()


def test_decide_batch_has_a_choices_column(client):
    ids = [f"b{i}" for i in range(20)]
    batch = client.decide_batch(
        ids, [customer(i) for i in range(20)], campaign="renewal_channels", include_scores=True
    )
    assert len(batch.choices) == 20 == len(batch.actions)
    for row in batch:
        assert row.offer_id == row.choices["offer"]
        assert row.action.startswith(row.offer_id + "+")
    assert batch.scores.shape == (20, len(batch.score_offer_ids))
    assert set(batch.actions) <= set(batch.score_offer_ids)


def test_a_campaign_without_dimensions_answers_as_before(client):
    d = client.decide("c3", customer(3), campaign="renewal")
    assert d.choices == {} and d.action == ""
    batch = client.decide_batch(["x", "y"], [customer(4), customer(5)], campaign="renewal")
    assert batch.choices == [] and batch.actions == []


def test_a_landing_campaign_learns_the_engagement_component_and_refuses_one_out_of_range(
    tmp_path,
):
    text = CHANNELS.read_text(encoding="utf-8")
    text = text.replace('name = "shared"', 'name = "landing"', 1)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("alpha = "))
    path = tmp_path / "renewal_channels.toml"
    path.write_text(text, encoding="utf-8")
    with running_server(tmp_path / "data", campaigns=(path,)) as srv, admin_client(srv) as c:
        d = c.decide("e1", customer(1), campaign="renewal_channels")
        with pytest.raises(grpc.RpcError) as err:
            c.reward(d.decision_id, 100.0, campaign="renewal_channels", components={"engaged": 3})
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "components['engaged']" in err.value.details()
        assert c.reward(
            d.decision_id, 100.0, campaign="renewal_channels", components={"engaged": 1.0}
        )
        engine = srv.campaigns.get("renewal_channels")[1]
        assert engine._learner.training.land_n_.sum() == 1  # the one accepted engagement
