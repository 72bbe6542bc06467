"""The policy: a small CNN on the camera image plus proprioception, an MLP head, behaviour cloning.

Every arm trains this same network with the same optimiser, steps and batch size; arms
differ only in the training data (the demonstrations, or their augmented copies) and in
whether :func:`baseline_augment` (random crop + colour jitter, what Octo and LeRobot apply
at training time) is applied to each batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (see below)
from torch import nn

from policy_bench.demos import Demo
from policy_bench.sim import MAX_STEP, PROPRIO_SIZE
from policy_bench.tasks import TASKS

# torch._dynamo is imported above, before anything loads TensorFlow: the optimiser imports it
# (and triton) lazily, and importing triton after TensorFlow segfaults with this project's
# pinned versions (seen in a spawned worker: read the dataset with tfds, then Adam()).
TASK_NAMES = tuple(TASKS)


class Policy(nn.Module):
    """Image (3x64x64 or any square size) + proprio + task one-hot -> (delta xyz / MAX_STEP, gripper logit)."""

    def __init__(self, size: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 16, 3, stride=1, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        features = 16 * (size // 8) ** 2
        self.image_head = nn.Sequential(nn.Linear(features, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(128 + PROPRIO_SIZE + len(TASK_NAMES), 128), nn.ReLU(), nn.Linear(128, 4))

    def forward(self, images: torch.Tensor, proprio: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """``images`` float (B, 3, H, W) in 0..1; returns (B, 4)."""
        z = self.image_head(self.encoder(images - 0.5))
        return self.head(torch.cat([z, proprio, task], dim=1))


@dataclasses.dataclass
class TrainingData:
    """Every step of a set of demonstrations, as arrays."""

    images: np.ndarray  # (N, H, W, 3) uint8
    proprio: np.ndarray  # (N, PROPRIO_SIZE) float32
    task: np.ndarray  # (N, tasks) float32 one-hot
    actions: np.ndarray  # (N, 4) float32

    @classmethod
    def of(cls, demos: list[Demo]) -> TrainingData:
        return cls(
            images=np.concatenate([d.images for d in demos]),
            proprio=np.concatenate([d.proprio for d in demos]),
            task=np.concatenate([np.tile(task_one_hot(d.task), (len(d.actions), 1)) for d in demos]),
            actions=np.concatenate([d.actions for d in demos]),
        )


def task_one_hot(task: str) -> np.ndarray:
    out = np.zeros(len(TASK_NAMES), np.float32)
    out[TASK_NAMES.index(task)] = 1.0
    return out


def baseline_augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (pad by ``pad`` px, crop back at a random offset) and colour jitter, per image.

    Jitter: brightness and contrast x[0.8, 1.2], saturation x[0.8, 1.2], a hue-like channel
    gain x[0.95, 1.05] per channel; ``images`` float (B, 3, H, W) in 0..1.
    """
    b, _, h, w = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    rows = torch.arange(h)[None, :] + offsets[:, :1]
    cols = torch.arange(w)[None, :] + offsets[:, 1:]
    batch = torch.arange(b)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def factor(low: float, high: float, shape=(b, 1, 1, 1)) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    out = cropped * factor(0.8, 1.2)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor(0.8, 1.2) + mean
    gray = out.mean(dim=1, keepdim=True)
    out = (out - gray) * factor(0.8, 1.2) + gray
    out = out * factor(0.95, 1.05, (b, 3, 1, 1))
    return out.clamp(0.0, 1.0)


def train(data: TrainingData, seed: int, steps: int, batch: int, augment: bool, device: str = "cpu") -> Policy:
    """Behaviour cloning: MSE on the scaled xyz step, cross-entropy on the gripper command.

    Batches are drawn on the CPU from ``seed`` (so every device sees the same batches); the
    network trains on ``device`` and comes back on the CPU for rollouts.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Policy(size=data.images.shape[1]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2)  # uint8, converted per batch
    proprio, task = torch.from_numpy(data.proprio), torch.from_numpy(data.task)
    target_xyz = torch.from_numpy(np.clip(data.actions[:, :3] / MAX_STEP, -1.0, 1.0))
    target_grip = torch.from_numpy(data.actions[:, 3])
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        x = images[index].float() / 255.0
        if augment:
            x = baseline_augment(x, generator)
        out = model(x.to(device), proprio[index].to(device), task[index].to(device))
        loss = nn.functional.mse_loss(
            out[:, :3], target_xyz[index].to(device)
        ) + 0.1 * nn.functional.binary_cross_entropy_with_logits(out[:, 3], target_grip[index].to(device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return model.cpu()


@torch.no_grad()
def act(model: Policy, image: np.ndarray, proprio: np.ndarray, task: str) -> np.ndarray:
    """The action for one observation: (delta xyz in metres, gripper 0/1)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    out = model(x, torch.from_numpy(proprio)[None], torch.from_numpy(task_one_hot(task))[None])[0].numpy()
    return np.array([*(np.clip(out[:3], -1.0, 1.0) * MAX_STEP), 1.0 if out[3] > 0 else 0.0], np.float32)
