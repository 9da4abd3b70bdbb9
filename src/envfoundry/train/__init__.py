"""Adapters to trainers: envfoundry environments as TRL GRPO datasets, rewards and rollouts."""
