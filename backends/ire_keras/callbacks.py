"""A callback that logs the flat mask's statistics."""

from __future__ import annotations

import keras

from .train_step import find_ire

__all__ = ["MaskMonitor"]


class MaskMonitor(keras.callbacks.Callback):
    """Adds IRE's mask statistics to the epoch logs (and so to ``History``,
    ``CSVLogger`` and ``TensorBoard``).

    Keys: ``ire_flat_fraction`` (fraction of weights marked flat),
    ``ire_threshold`` (τ of the last refresh) and ``ire_refreshes``.

    Example:
      >>> import keras, numpy as np, ire_keras
      >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
      >>> model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.1), flat_fraction=0.4),
      ...               loss="mse")
      >>> x = np.random.default_rng(0).normal(size=(8, 4))
      >>> history = model.fit(x, np.zeros((8, 3)), verbose=0,
      ...                     callbacks=[ire_keras.MaskMonitor()])
      >>> [round(f, 3) for f in history.history["ire_flat_fraction"]]   # 6 of 15 weights
      [0.4]
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        ire = find_ire(self.model.optimizer)
        if ire is None or not ire.built:
            return
        logs["ire_flat_fraction"] = float(keras.ops.convert_to_numpy(ire.mask_flat_fraction))
        logs["ire_threshold"] = float(keras.ops.convert_to_numpy(ire.mask_threshold))
        logs["ire_refreshes"] = int(keras.ops.convert_to_numpy(ire.refresh_count))
