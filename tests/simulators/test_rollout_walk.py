"""README's rollout walk runs: shadow, online against business as usual, and a promoted bad
snapshot rolled back by the monitor, on a real server with the nbo commands."""

from __future__ import annotations

import pytest

from simulators.rollout_walk import DAY_BATCH, run


@pytest.mark.slow
def test_the_walk_goes_from_shadow_to_online_to_an_automatic_rollback(capsys) -> None:
    said = run(DAY_BATCH * 10, DAY_BATCH * 8, DAY_BATCH * 40, seed=7, control_share=0.5)
    assert said["shadow"].startswith("renewal: mode shadow, live")
    assert "nbo agreed with the baseline on" in said["shadow"]
    assert "nbo's choices are estimated at" in said["shadow"]
    assert said["online"].startswith("renewal: mode online, live")
    assert "anytime-valid bound" in said["online"] and "shadow:" not in said["online"]
    assert said["rolled_back"].startswith("renewal: mode online, rolled_back to control")
    assert "the policy is worse than the control" in said["rolled_back"]
    assert said["customers_until_rollback"] < DAY_BATCH * 40
    printed = capsys.readouterr().out
    assert "$ nbo promote candidate.nbo --force" in printed
