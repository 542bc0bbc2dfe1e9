"""Training logs: JSON lines (`log.jsonl`), tensorboard scalars and a tqdm progress bar, on the main rank only."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from tqdm import tqdm


class TrainLogger:
    """`log(step, scalars)` appends one JSON line and tensorboard scalars; `advance()` moves the progress bar.

    On non-main ranks (enabled=False) every method is a no-op. Python `logging` records of the "ln3diff" loggers
    (warnings such as skipped steps) are printed through tqdm so they do not break the bar, and are also written
    to the JSON log as {"event": ...} lines.
    """

    def __init__(self, out_dir: str | Path, total_steps: int, start_step: int = 0, enabled: bool = True,
                 tensorboard: bool = True, progress: bool = True):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        self.handler = None
        if not enabled:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.json_file = open(out_dir / "log.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step or None)
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train")
        self.handler = _TqdmJsonHandler(self)
        logging.getLogger("ln3diff").addHandler(self.handler)
        logging.getLogger("ln3diff").setLevel(logging.INFO)
        self.start_time = time.time()

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in scalars.items()}
        record = {"step": step, "time": round(time.time() - self.start_time, 3),
                  **{k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}
        self.json_file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in clean.items():
                self.writer.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in clean.items() if k in ("loss", "psnr", "total")})

    def event(self, message: str) -> None:
        if not self.enabled:
            return
        self.json_file.write(json.dumps({"time": round(time.time() - self.start_time, 3), "event": message}) + "\n")

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if not self.enabled:
            return
        logging.getLogger("ln3diff").removeHandler(self.handler)
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.json_file.close()
        self.enabled = False


class _TqdmJsonHandler(logging.Handler):
    def __init__(self, logger: TrainLogger):
        super().__init__(logging.INFO)
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        tqdm.write(f"[{record.levelname.lower()}] {message}")
        self.logger.event(message)
