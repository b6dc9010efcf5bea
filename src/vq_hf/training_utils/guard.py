"""The non-finite loss guard: stop at once, name the step, point at the last good checkpoint."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """Raised by the training loop when a micro-batch loss is NaN or infinite (on any process).

    Nothing is saved after the bad step, so the newest checkpoint is the last good state.
    """

    def __init__(self, step: int, value: float, last_checkpoint=None):
        self.step = step
        self.value = value
        self.last_checkpoint = last_checkpoint
        where = (f"the last good checkpoint is {last_checkpoint} (resume it with --resume_from_checkpoint "
                 f"{last_checkpoint} and e.g. optimizer.max_grad_norm set, or start over with a lower "
                 f"optimizer.learning_rate)" if last_checkpoint else "no checkpoint was written before it")
        super().__init__(f"non-finite training loss ({value}) at optimizer step {step}; training stopped, "
                         f"nothing was saved after it; {where}")
