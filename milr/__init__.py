"""MILR: test-time latent reasoning for text-to-image generation with Janus-Pro, on Lightning."""

from milr.api import optimize
from milr.backbone import JanusBackbone
from milr.module import MILRModule
from milr.state import MILRResult, PromptState, StopReason

__all__ = ["JanusBackbone", "MILRModule", "MILRResult", "PromptState", "StopReason", "optimize"]
