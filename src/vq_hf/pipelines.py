"""``pipeline("discrete-units", model=DIR)``: the codes of one input (audio path / array, image path / PIL image).

Importing this module registers the task with transformers' ``PIPELINE_REGISTRY`` (transformers 5.x):

    import vq_hf.pipelines  # registers "discrete-units"
    from transformers import pipeline

    units = pipeline("discrete-units", model="runs/speech")
    units("clip.flac")                                  # {"codes": [...], "shape": [T]}
    units(waveform, sampling_rate=8000, dedup=True)     # {"codes": [...], "durations": [...], "shape": [T]}

The model is loaded with ``AutoModel`` (a speech folder loads its encoder + quantizer into ``VQVAEModel``; the
CTC head is not needed for codes). Inputs are read and checked by :mod:`vq_hf.unit_inputs` with the processor
saved in the model folder, exactly as ``extract_units`` does; many inputs at once are better served by
:func:`vq_hf.units.extract_units` (batched, with bad-input reporting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

TASK = "discrete-units"


class DiscreteUnitsPipeline(Pipeline):
    # inputs are prepared by vq_hf.unit_inputs with the processor of the model folder
    _load_tokenizer = False
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from vq_hf.unit_inputs import input_handler

        self._handlers: dict[bool, Any] = {}
        self._input_handler = input_handler

    def _handler(self, resize: bool):
        if resize not in self._handlers:
            self._handlers[resize] = self._input_handler(self.model, resize=resize)
        return self._handlers[resize]

    def _sanitize_parameters(self, sampling_rate=None, resize=None, dedup=None, **kwargs):
        if kwargs:
            raise TypeError(f"discrete-units pipeline: unexpected arguments {sorted(kwargs)}")
        pre = {}
        if sampling_rate is not None:
            pre["sampling_rate"] = int(sampling_rate)
        if resize is not None:
            pre["resize"] = bool(resize)
        post = {"dedup": bool(dedup)} if dedup is not None else {}
        return pre, {}, post

    def preprocess(self, inputs, sampling_rate: int | None = None, resize: bool = False):
        from pathlib import Path

        handler = self._handler(resize)
        if sampling_rate is not None and isinstance(inputs, (np.ndarray, list, torch.Tensor)):
            inputs = (np.asarray(inputs), sampling_rate)
        name = str(inputs) if isinstance(inputs, (str, Path)) else "input"
        value = Path(inputs) if isinstance(inputs, str) else inputs
        return handler.collate([handler.load(value, name)])

    def _forward(self, model_inputs):
        encoded = self.model.encode(**model_inputs)
        return {"codes": encoded.codes, "lengths": encoded.lengths}

    def postprocess(self, model_outputs, dedup: bool = False):
        from vq_hf.units import run_length_encode

        codes = model_outputs["codes"][0].detach().cpu()
        if model_outputs.get("lengths") is not None:
            codes = codes[: int(model_outputs["lengths"][0])]
        shape = list(codes.shape[:-1])
        flat = codes.reshape(-1, codes.shape[-1]).numpy()
        out: dict[str, Any] = {"shape": shape}
        if dedup:
            if len(shape) != 1:
                raise ValueError("discrete-units pipeline: dedup needs sequence codes (speech, handwriting)")
            flat, durations = run_length_encode(flat)
            out["durations"] = durations.tolist()
        out["codes"] = flat[:, 0].tolist() if flat.shape[1] == 1 else flat.tolist()
        return out


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=DiscreteUnitsPipeline, pt_model=AutoModel, type="multimodal")

__all__ = ["DiscreteUnitsPipeline", "TASK"]
