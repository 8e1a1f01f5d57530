"""The L3/L4 firewall engine, sans-IO: the rule model and its reference first-match
evaluation (model.py); rule files, the compiled classifier and connection tracking build
on it."""

from .model import Action, Rule, RuleSet, Verdict, evaluate

__all__ = ["Action", "Rule", "RuleSet", "Verdict", "evaluate"]
