"""A callback for the DDP test: each rank saves its flattened parameters and env-step counter."""

from pathlib import Path

import lightning as L
import torch


class SaveRankParameters(L.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_fit_end(self, trainer, pl_module) -> None:
        flat = torch.cat([p.detach().flatten().cpu() for p in pl_module.parameters()])
        torch.save(
            {"params": flat, "buffers": dict(pl_module.named_buffers()), "env_steps": int(pl_module.env_steps)},
            self.folder / f"rank{trainer.global_rank}.pt",
        )
