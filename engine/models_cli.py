"""``nbo model``: list, inspect, promote and roll back a running server's model versions.

Talks to the server's AdminService (:class:`engine.client.NboClient`), so it works against any
replica, wherever its journal is. Exit codes: 0 done (also when a promotion changed nothing),
2 refused or failed (the server's status and message are printed).

Examples
--------
``nbo model list --server 127.0.0.1:50051``
``nbo model show v12 --json``
``NBO_ADMIN_TOKEN=... nbo model promote renewal-offline.snap`` (a file in the server's
<data-dir>/models/<campaign>/)
``nbo model rollback v9``
``nbo mode`` (the rollout: mode, state, the lift monitor's bound) · ``nbo mode shadow --reason
"first week"`` · ``nbo mode online`` (also resumes a rolled-back campaign)

>>> from engine.cliargs import parse_command
>>> args = parse_command(register, ["model", "rollback", "v9", "--server", "127.0.0.1:6000"])
>>> args.action, args.version, args.server
('rollback', 'v9', '127.0.0.1:6000')
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.campaign.config import MODES
from engine.cliargs import add_actions, command, commands
from engine.serving.config import ADMIN_TOKEN_ENV

if TYPE_CHECKING:
    from engine.client import ModelChange, ModelVersion, NboClient

FAILED = 2


_PROMOTE_DESCRIPTION = (
    "Promote a snapshot file (written by `nbo train`, `nbo evaluate --save-best` or exported "
    "by a server) to be the campaign's live model. FILE is read by the server, from its model "
    "directory only (copy the file into <data-dir>/models/<campaign>/ first). The server first "
    "evaluates it against the live model off-policy on its journal's recent closed decisions "
    "and refuses (exit 2, both numbers printed) unless its lower bound beats the live model's "
    "estimate; --force promotes anyway (recorded). Promoting the live model's own file changes "
    "nothing."
)


def _promote_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file",
        help="snapshot file, relative to the server's model directory "
        "(<data-dir>/models/<campaign>/)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even without evidence that it beats the live model (recorded)",
    )


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server", default="127.0.0.1:50051", help="host:port of the server [%(default)s]"
    )
    p.add_argument("--campaign", default="", help="campaign [the server's only one]")
    p.add_argument(
        "--admin-token",
        default=None,
        help=f"AdminService bearer token; prefer the {ADMIN_TOKEN_ENV} environment variable "
        f"[${ADMIN_TOKEN_ENV}]",
    )
    p.add_argument("--tls-ca", type=Path, help="PEM root certificate(s): use TLS [plaintext]")
    p.add_argument(
        "--tls-server-name", help="name to verify in the server's certificate [the host]"
    )
    p.add_argument(
        "--tls-client-cert", type=Path, help="PEM client certificate (mutual TLS) [none]"
    )
    p.add_argument("--tls-client-key", type=Path, help="PEM client key (mutual TLS) [none]")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call [%(default)s]")
    p.add_argument("--json", action="store_true", help="print JSON instead of text [text]")


def client_from_args(args: argparse.Namespace) -> NboClient:
    """An :class:`~engine.client.NboClient` for the connection options."""
    from engine.client import NboClient

    return NboClient(
        args.server,
        campaign=args.campaign,
        timeout=args.timeout,
        tls_ca=args.tls_ca,
        tls_server_name=args.tls_server_name,
        tls_client_cert=args.tls_client_cert,
        tls_client_key=args.tls_client_key,
        admin_token=args.admin_token or os.environ.get(ADMIN_TOKEN_ENV),
    )


def run(args: argparse.Namespace) -> int:
    """Run one ``nbo model`` action; print its result or the server's refusal."""
    import grpc

    try:
        with client_from_args(args) as client:
            return _ACTIONS[args.action](client, args)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        command = (
            f"nbo {args.command}"
            if args.command in ("promote", "mode")
            else f"nbo model {args.action}"
        )
        print(f"{command}: error: {code}: {details}", file=sys.stderr)
        return FAILED


def _list(client: NboClient, args: argparse.Namespace) -> int:
    versions = client.list_models(limit=args.limit, before=args.before)
    if args.json:
        print(json.dumps([_as_dict(v) for v in versions], indent=2))
        return 0
    rows = [("", "VERSION", "KIND", "CREATED (UTC)", "BYTES", "PARENT", "ORIGIN")]
    for v in versions:
        rows.append(
            (
                "*" if v.live else "",
                v.version,
                v.kind,
                _when(v.created),
                "kept" if v.bytes_kept else "pruned",
                v.parent or "-",
                v.origin_summary,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def _show(client: NboClient, args: argparse.Namespace) -> int:
    v = client.get_model(args.version)
    if args.json:
        print(json.dumps(_as_dict(v), indent=2))
        return 0
    fields = _as_dict(v)
    fields["created"] = _when(v.created)
    fields["origin"] = json.dumps(fields["origin"], sort_keys=True)
    for key, value in fields.items():
        text = ", ".join(value) if isinstance(value, list) else value
        print(f"{key}: {text}")
    return 0


def _promote(client: NboClient, args: argparse.Namespace) -> int:
    return _report(client.promote_model(args.file, force=args.force), args)


def _rollback(client: NboClient, args: argparse.Namespace) -> int:
    return _report(client.rollback(args.version), args)


def _report(change: ModelChange, args: argparse.Namespace) -> int:
    v = change.model
    if args.json:
        print(
            json.dumps(
                {"campaign": change.campaign, "unchanged": change.unchanged, "model": _as_dict(v)},
                indent=2,
            )
        )
    elif change.unchanged:
        print(f"{change.campaign}: {v.version} is live already ({v.kind}); nothing changed")
    else:
        print(
            f"{change.campaign}: {v.version} is live ({v.kind}: {v.origin_summary}; "
            f"parent {v.parent or '-'})"
        )
    return 0


def _as_dict(v: ModelVersion) -> dict[str, Any]:
    out = dict(vars(v))
    out["origin"] = json.loads(v.origin or "{}")
    return out


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created))


def _mode(client: NboClient, args: argparse.Namespace) -> int:
    if args.mode:
        change = client.set_mode(args.mode, reason=args.reason)
        if args.json:
            print(json.dumps(vars(change), indent=2))
        else:
            print(f"{change.campaign}: mode {change.mode}, {change.rollout_state}")
        return 0
    info = client.model_info()
    fields = {
        "campaign": info.campaign,
        "mode": info.mode,
        "state": info.rollout_state,
        "reason": info.rollout_reason,
        "safe_mode": info.safe_mode,
        "lift": info.lift,
        "lift_lower": info.lift_lower,
        "lift_upper": info.lift_upper,
        "lift_treatment": info.lift_treatment,
        "lift_control": info.lift_control,
        "agreement_rate": info.agreement_rate,
        "baseline_value": info.baseline_value,
        "shadow_nbo_value": info.shadow_nbo_value,
        "shadow_gain": info.shadow_gain,
        "shadow_gain_lower": info.shadow_gain_lower,
        "shadow_gain_upper": info.shadow_gain_upper,
        "shadow_rows": info.shadow_rows,
        "model_version": info.model_version,
    }
    if args.json:
        print(
            json.dumps(
                {
                    k: v if not isinstance(v, float) or math.isfinite(v) else None
                    for k, v in fields.items()
                },
                indent=2,
            )
        )
        return 0
    state = info.rollout_state + (f" to {info.safe_mode}" if info.safe_mode else "")
    print(f"{info.campaign}: mode {info.mode}, {state}, model {info.model_version}")
    if info.rollout_reason:
        print(f"  {info.rollout_reason}")
    if math.isfinite(info.lift):
        print(
            f"  lift per decision {info.lift:+.4g}, anytime-valid bound "
            f"[{info.lift_lower:+.4g}, {info.lift_upper:+.4g}] over {info.lift_treatment} "
            f"policy and {info.lift_control} control decisions"
        )
    if info.mode == "shadow" and math.isfinite(info.agreement_rate):
        print(
            f"  shadow: nbo agreed with the baseline on {100 * info.agreement_rate:.1f}% of "
            f"rewarded decisions; the baseline earned {info.baseline_value:.4g} per decision"
        )
    if info.mode == "shadow" and math.isfinite(info.shadow_nbo_value):
        print(
            f"  shadow: nbo's choices are estimated at {info.shadow_nbo_value:.4g} per decision, "
            f"{info.shadow_gain:+.4g} over the baseline (95% CI {info.shadow_gain_lower:+.4g} "
            f"to {info.shadow_gain_upper:+.4g}; {info.shadow_rows} recent shadow decisions, "
            "doubly robust: observed where nbo agreed, a reward model where it did not)"
        )
    return 0


_ACTIONS = {
    "list": _list,
    "show": _show,
    "promote": _promote,
    "rollback": _rollback,
    "mode": _mode,
}


@command("list")
def _list_command(parser: argparse.ArgumentParser) -> None:
    """versions, newest first"""
    parser.add_argument("--limit", type=int, default=20, help="most versions [%(default)s]")
    parser.add_argument("--before", default="", help="only versions older than this one")
    _connection(parser)


@command("show")
def _show_command(parser: argparse.ArgumentParser) -> None:
    """one version in full"""
    parser.add_argument("version", help="e.g. v12")
    _connection(parser)


@command("promote", description=_PROMOTE_DESCRIPTION)
def _promote_command(parser: argparse.ArgumentParser) -> None:
    """make a snapshot file the live model"""
    _promote_arguments(parser)
    _connection(parser)


@command("rollback")
def _rollback_command(parser: argparse.ArgumentParser) -> None:
    """make an earlier version live again

    Restore an earlier version whose bytes are kept, as a new version of kind rollback. It learns
    from rewards that arrive from now on; rewards journaled since that version are not re-applied
    to it.
    """
    parser.add_argument("version", help="e.g. v9")
    _connection(parser)


@command(
    "model",
    run,
    description="Manage a campaign's model registry through a running server's AdminService. "
    f"Needs the server's admin token (--admin-token or the {ADMIN_TOKEN_ENV} environment "
    "variable). Exits with 2 when the server refuses.",
)
def _model_command(parser: argparse.ArgumentParser) -> None:
    """list, inspect, promote or roll back a running server's model versions"""
    add_actions(parser, _list_command, _show_command, _promote_command, _rollback_command)


# `nbo promote FILE` is `nbo model promote FILE`: the step a rollout ends with.
@command("promote", run, description=_PROMOTE_DESCRIPTION)
def _gated_promote_command(parser: argparse.ArgumentParser) -> None:
    """make a snapshot file the live model, on evidence that it beats the live one"""
    _promote_command.arguments(parser)
    parser.set_defaults(action="promote")


@command("mode", run)
def _mode_command(parser: argparse.ArgumentParser) -> None:
    """show or set a campaign's rollout mode (online, shadow, logging)

    Without MODE: the campaign's mode, its state (live, or rolled_back by the lift monitor, with
    the evidence) and the monitor's anytime-valid lift bound. With MODE: set it on the campaign's
    leading learner, journaled for every replica; setting a mode also resumes a rolled-back
    campaign (see README, 'Rolling out').
    """
    parser.add_argument("mode", nargs="?", choices=MODES, help="the mode to set [show it]")
    parser.add_argument("--reason", default="", help="why, recorded with the change [none]")
    _connection(parser)
    parser.set_defaults(action="mode")


# What the nbo.commands entry points model, promote and mode name (pyproject.toml).
register = commands(_model_command, _gated_promote_command, _mode_command)
