"""Campaigns: offer catalog, eligibility rules, control group, guardrails, config loading."""

from __future__ import annotations

from engine.campaign.config import CampaignConfig, load_campaign, parse_campaign
from engine.campaign.control import control_bucket, control_flags, in_control_group
from engine.campaign.guardrails import Guardrails
from engine.campaign.offers import Offer, parse_offer
from engine.campaign.rules import Rule, parse_rule

__all__ = [
    "CampaignConfig",
    "Guardrails",
    "Offer",
    "Rule",
    "control_bucket",
    "control_flags",
    "in_control_group",
    "load_campaign",
    "parse_campaign",
    "parse_offer",
    "parse_rule",
]
