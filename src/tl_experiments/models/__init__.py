"""Backbone creation, weights resolution, stages, and the LightningModule."""

from tl_experiments.models.backbone import create_backbone
from tl_experiments.models.stages import Stage, get_stages, select_stages, stage_summary

__all__ = ["Stage", "create_backbone", "get_stages", "select_stages", "stage_summary"]
