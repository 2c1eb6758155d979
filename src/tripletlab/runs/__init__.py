"""The run folder: the name of every file in it, creating a run, opening one, checkpoints.

    RUN_DIR/
      config.yaml        the resolved `RunConfig`
      checkpoints/       checkpoint folders (below): the last and the best epoch, and a
                         mid-epoch one with --checkpoint-every, and
        index.json       naming them `last`, `best` and `resume` (where training goes on)
      history.json       the loss of every step and the logs of every epoch
      metrics.json       test-set metrics, stable keys (`precision_at_1`, `map_at_r`, ...)
      report.md, plots/  the report and its pictures
      augment.png        one image and nine of its augmentations
      tensorboard/       TensorBoard event files
      projector/         Embedding Projector files
      projector_config.pbtxt   points TensorBoard's projector at projector/
      model.onnx         the ONNX export (`model.int8.onnx`: its int8 version)
      index/             a gallery index over the run's embeddings
      .lock              held by the process training the run

A checkpoint is a folder holding `model.safetensors` and `config.json`, and the training state
to resume from (`state.safetensors`, `state.json`), written atomically (into a temporary
sibling folder, renamed into place) and read without any pickle. This
package imports nothing of tripletlab but the config and file helpers: every stage (training,
evaluation, export, reports, commands) opens runs through it, and no other module names a
file of a run.
"""

from tripletlab.runs.checkpoints import (
    checkpoint_sha256,
    load_tensors,
    read_checkpoint,
    resolve_checkpoint,
    write_checkpoint,
)
from tripletlab.runs.files import (
    AUGMENT_FILE,
    CHECKPOINT_CONFIG,
    CHECKPOINT_INDEX,
    CHECKPOINTS,
    CONFIG_FILE,
    HISTORY_FILE,
    INDEX,
    LOCK_FILE,
    METRICS_FILE,
    ONNX_FILE,
    PLOTS,
    PROJECTOR,
    PROJECTOR_CONFIG,
    REPORT_FILE,
    SAMPLES_FILE,
    STATE_META,
    STATE_TENSORS,
    TENSORBOARD,
    WEIGHTS,
    quantized_path,
    read_json,
)
from tripletlab.runs.folder import RunDir

__all__ = [
    "AUGMENT_FILE",
    "CHECKPOINTS",
    "CHECKPOINT_CONFIG",
    "CHECKPOINT_INDEX",
    "CONFIG_FILE",
    "HISTORY_FILE",
    "INDEX",
    "LOCK_FILE",
    "METRICS_FILE",
    "ONNX_FILE",
    "PLOTS",
    "PROJECTOR",
    "PROJECTOR_CONFIG",
    "REPORT_FILE",
    "SAMPLES_FILE",
    "STATE_META",
    "STATE_TENSORS",
    "TENSORBOARD",
    "WEIGHTS",
    "RunDir",
    "checkpoint_sha256",
    "load_tensors",
    "quantized_path",
    "read_checkpoint",
    "read_json",
    "resolve_checkpoint",
    "write_checkpoint",
]
