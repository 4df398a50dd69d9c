"""A local web page for a trained checkpoint: `python -m slr.demo ckpt_path=CKPT
[server_name=127.0.0.1 server_port=7860]`. Needs the `demo` extra (Gradio).

The model loads once; uploads, the frame strip and Gradio's caches live in a temporary folder
that is removed when the server stops. Binds to the loopback interface unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from slr.inference.predictor import Predictor
from slr.inference.streaming import check_window
from slr.runs.cli import model_overrides, quiet_known_warnings, require

log = logging.getLogger(__name__)


def _stop(signum, frame) -> None:
    # SIGTERM ends the server as Ctrl-C does, so the temporary folder is still removed
    raise KeyboardInterrupt


@hydra.main(version_base="1.3", config_path="../conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    quiet_known_warnings()
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    require(cfg, "python -m slr.demo ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt")
    check_window(cfg.webcam_window, cfg.webcam_stride)
    if cfg.webcam_every <= 0 or cfg.num_views < 1:
        raise ValueError(
            f"webcam_every={cfg.webcam_every}, num_views={cfg.num_views}: give webcam_every > 0 "
            "seconds and num_views >= 1"
        )
    signal.signal(signal.SIGTERM, _stop)
    with tempfile.TemporaryDirectory(prefix="slr-demo-") as tmp:
        # read by Gradio at import: every upload and every image it serves goes there
        os.environ["GRADIO_TEMP_DIR"] = tmp
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        try:
            from slr.ui.app import build_app
        except ImportError as e:
            raise ImportError(f'slr.demo needs Gradio: pip install -e ".[demo]" ({e})') from e
        start = time.perf_counter()
        predictor = Predictor(
            cfg.ckpt_path, cfg.device, cfg.topk, cfg.num_views, cfg.num_frames, cfg.image_size,
            cfg.bbox_margin, model_overrides=model_overrides(cfg),
        )  # fmt: skip
        log.info(
            "model loaded in %.2f s on %s (%d threads): %d glosses, %d frames at %d px",
            time.perf_counter() - start, predictor.device, torch.get_num_threads(),
            len(predictor.glosses), predictor.num_frames, predictor.image_size,
        )  # fmt: skip
        app = build_app(
            predictor, Path(cfg.ckpt_path).name, cfg.num_views, cfg.webcam_every,
            cfg.webcam_window, cfg.webcam_stride,
        )  # fmt: skip
        app.queue().launch(
            server_name=cfg.server_name,
            server_port=cfg.server_port,
            show_error=True,
            max_file_size=f"{cfg.max_upload_mb}mb",
            ssr_mode=False,
            quiet=False,
        )


if __name__ == "__main__":
    main()
