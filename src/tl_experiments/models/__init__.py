"""Backbone creation, weights resolution and the LightningModule."""

from tl_experiments.models.backbone import create_backbone
from tl_experiments.stages import Stage, get_stages, select_stages, stage_summary

__all__ = ["Stage", "create_backbone", "get_stages", "select_stages", "stage_summary"]
