"""Adapters to trainers: any envfoundry environment as TRL GRPO data, rewards and rollouts.

Needs the ``train`` extra (``pip install "envfoundry[train]"``); importing this package does not
import torch, transformers or TRL (they load on first use).
"""

from .chat import chat_dicts, to_action
from .model import (
    TRAIN_INSTALL_COMMAND,
    check_train_installed,
    load_model,
    load_tokenizer,
    pick_device,
    save_model,
)
from .policy import TransformersPolicy, generate_ids
from .report import eval_row, plot_reward_curve, verdict, write_report
from .run import TrainConfig, TrainResult, train, training_tasks
from .trl_adapter import EnvAdapter, Graded, grade_episode, is_multi_turn

__all__ = [
    "TRAIN_INSTALL_COMMAND", "EnvAdapter", "Graded", "TrainConfig", "TrainResult", "TransformersPolicy",
    "chat_dicts", "check_train_installed", "eval_row", "generate_ids", "grade_episode", "is_multi_turn",
    "load_model", "load_tokenizer", "pick_device", "plot_reward_curve", "save_model", "to_action", "train",
    "training_tasks", "verdict", "write_report",
]
