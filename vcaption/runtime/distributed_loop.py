"""A custom training loop for `MultiWorkerMirroredStrategy`, driving the same Keras callbacks as `fit`.

Keras 3's `Model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy` before the first step
(keras-team/keras#20585: `_maybe_symbolic_build` calls `strategy.reduce` on the nested input batch,
and `reduce_per_replica` reduces the scalar loss with `axis=0`). `fit_distributed` replaces `fit`
for that strategy only. It keeps what `vcaption.train.fit` relies on:

* the checkpoint-interval structure (Keras "epochs" of `steps_per_epoch` steps over a repeated
  dataset) and the callbacks — CSV history, TensorBoard, validation CIDEr-D, `BackupAndRestore`
  (whose `on_train_begin` sets `model._initial_epoch`, so a restarted worker resumes at the
  first interval that has no checkpoint);
* the compiled optimizer and loss: the loss of each replica is divided by the number of replicas
  and the optimizer all-reduces (sums) the gradients across workers, so one step equals a step on
  the global batch.

Example:
```python
with strategy.scope():
    model = build_model(...)
    model.compile(optimizer=..., loss=MaskedCaptionLoss())
fit_distributed(model, dataset, epochs=10, steps_per_epoch=300, callbacks=[...], verbose=2)
```
"""

from __future__ import annotations

import keras
import tensorflow as tf


def make_distributed_train_step(model, strategy: tf.distribute.Strategy):
    """A `tf.function(iterator) -> mean loss` running one synchronous step on every replica."""
    replicas = strategy.num_replicas_in_sync

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)
            loss = model.loss(targets, predictions)
            # Gradients are summed across replicas: scale so that their sum is the global mean.
            scaled = loss / replicas
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        model.optimizer.apply_gradients(zip(gradients, variables))
        return loss

    @tf.function
    def train_step(iterator):
        inputs, targets = next(iterator)
        per_replica = strategy.run(replica_step, args=(inputs, targets))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return train_step


def fit_distributed(model, dataset: tf.data.Dataset, epochs: int, steps_per_epoch: int,
                    callbacks, verbose: int = 1) -> None:
    """Trains `model` (compiled, built in `model.distribute_strategy.scope()`) like `model.fit`.

    Args:
        model: the compiled model.
        dataset: a repeated dataset of (inputs, targets) global batches.
        epochs: checkpoint intervals to run in total (resumed ones included).
        steps_per_epoch: optimizer steps per interval.
        callbacks: Keras callbacks; `on_epoch_end` gets {"loss": mean training loss}.
        verbose: 0 silent, 1 progress bar, 2 one line per interval.
    """
    strategy = model.distribute_strategy
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    train_step = make_distributed_train_step(model, strategy)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, model=model,
        epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    model._initial_epoch = 0
    callback_list.on_train_begin()
    for epoch in range(model._initial_epoch, epochs):  # BackupAndRestore set it when resuming
        callback_list.on_epoch_begin(epoch)
        total = 0.0
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            loss = float(train_step(iterator))
            total += loss
            callback_list.on_train_batch_end(step, {"loss": loss})
        logs = {"loss": total / steps_per_epoch}
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
