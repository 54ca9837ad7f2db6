"""Multi-worker training on `tf.distribute.MultiWorkerMirroredStrategy`, for every task.

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python -m tasks.classification train --strategy multi_worker

The cluster comes from `TF_CONFIG`, or from a Slurm allocation (`SlurmClusterResolver`) when
`TF_CONFIG` is absent and `SLURM_JOB_ID` is set. Worker 0 is the chief.

Keras 3.15's `model.fit` fails under this strategy (keras-team/keras#20585), so `fit` here is
the loop `model.fit` runs, on `strategy.run`: each replica calls the model's own `train_step` /
`test_step` (so compiled losses and metrics and custom `train_step` models — GAN, VAE — work as
they are), and the same Keras callbacks see the same logs on every worker. Losses are averaged
over the global batch (Keras scales each replica's loss by the number of replicas).

Only the chief writes: the other workers' run folders are scratch directories, removed at the
end. The chief's backup is broadcast to every worker when a run resumes, so workers need no
shared file system.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tasks.core import peers as peers_lib
from tasks.core.errors import UserError

# === The cluster ===


def cluster_spec():
    """(workers, index) from TF_CONFIG, or from Slurm's variables; a `UserError` when malformed."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        if os.environ.get("SLURM_JOB_ID"):
            return _slurm_cluster()
        raise UserError(
            "--strategy multi_worker needs TF_CONFIG (or a Slurm allocation): "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}.'
        )
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos}).") from None
    if not isinstance(tf_config, dict):
        raise UserError("TF_CONFIG must be a JSON object with 'cluster' and 'task'.")
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) for w in workers):
        raise UserError('TF_CONFIG needs "cluster": {"worker": ["host:port", ...]} with at least one worker.')
    if isinstance(cluster, dict) and set(cluster) - {"worker"}:
        others = ", ".join(sorted(set(cluster) - {"worker"}))
        raise UserError(f"TF_CONFIG cluster has jobs {others}: multi_worker uses workers only (worker 0 is the chief).")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise UserError('TF_CONFIG needs "task": {"type": "worker", "index": N}.')
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(workers):
        raise UserError(
            f"TF_CONFIG task index {index!r} is out of range: the cluster has {len(workers)} "
            f"workers (index 0 to {len(workers) - 1})."
        )
    for address in workers:
        _host_port(address)
    return workers, index


def _slurm_cluster():
    try:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        workers = resolver.cluster_spec().as_dict().get("worker", [])
        index = resolver.task_id
    except Exception as error:  # scontrol missing, bad SLURM_* variables
        raise UserError(f"could not read the Slurm allocation: {error}") from None
    return list(workers), int(index)


def _host_port(address):
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"TF_CONFIG worker address {address!r} is not host:port.")
    return host, int(port)


def strategy(timeout):
    """The strategy for this worker, once every peer answered within `timeout` seconds."""
    workers, index = cluster_spec()
    if os.environ.get("TF_CONFIG", "").strip():
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    else:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"worker": workers}), task_type="worker", task_id=index
        )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    # The constructor starts this worker's server, then blocks inside TensorFlow (holding the
    # GIL) until every worker has joined: a peer that never starts would hang it without a word.
    # A watchdog process waits for each peer's port and, past the deadline, prints one line and
    # ends this process (exit code 137: it cannot be interrupted more gently).
    peers = [address for i, address in enumerate(workers) if i != index]
    watchdog = subprocess.Popen(
        [sys.executable, peers_lib.__file__, str(os.getpid()), str(timeout), *peers],
        stdin=subprocess.DEVNULL,
    )
    try:
        result = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options
        )
    finally:
        watchdog.kill()
        watchdog.wait()
    return result


def wait_for_peers(addresses, timeout):
    """Returns once every `host:port` accepts a connection; a `UserError` after `timeout` seconds."""
    silent = peers_lib.first_silent(addresses, timeout)
    if silent is not None:
        raise UserError(peers_lib.silence_message(silent, timeout))


def wait_for_chief(strategy_, poll_seconds=0.2):
    """Blocks a non-chief worker until the chief's process has ended (its port closes).

    A worker that exits first stops its heartbeats and the chief's coordination service reports
    it as crashed while the chief still evaluates and exports.
    """
    chief = strategy_.cluster_resolver.cluster_spec().as_dict()["worker"][0]
    host, port = _host_port(chief)
    while True:
        try:
            socket.create_connection((host, port), timeout=2.0).close()
        except OSError:
            return
        time.sleep(poll_seconds)


def free_local_ports(count):
    """`count` free TCP ports on 127.0.0.1, for a cluster of local workers (tests, benchmarks)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """The workers one run trains on, as the runner sees them: one process (the chief, alone) or a
    `MultiWorkerMirroredStrategy` cluster. Derived once from the strategy `training.setup` returns.

        cluster = Cluster(training.setup(config))
        run = cluster.run_folder(run)                # a scratch copy on a worker that is not the chief
        if cluster.agree(run.complete): ...          # the chief's answer, on every worker
        config = cluster.global_batch(config)        # --batch-size is per worker under multi_worker
        with cluster.strategy.scope(): ...
        if not cluster.hand_over(model, say): return model   # a worker: digest, clean up, wait

    Attributes:
        strategy: the tf.distribute strategy.
        multi_worker: bool. Several worker processes train together.
        chief: bool. This process keeps the run folder, evaluates and exports (always, alone).
        workers: int. Worker processes (1 alone).
        index: int. This worker's task id (0 alone).
    """

    def __init__(self, strategy_):
        self.strategy = strategy_
        self.multi_worker = is_multi_worker(strategy_)
        self.chief = is_chief(strategy_)
        self.workers = num_workers(strategy_)
        self.index = strategy_.cluster_resolver.task_id if self.multi_worker else 0
        self.scratch = None

    def run_folder(self, run):
        """`run` on the chief; on another worker the same run name in a scratch folder, which
        `leave` removes (what the chief writes for real, a worker writes there)."""
        if self.chief:
            return run
        self.scratch = scratch_dir()
        return type(run)(run.task, pathlib.Path(self.scratch) / run.path.name)

    def agree(self, flag):
        """The chief's `flag` (e.g. "this run is already complete") on every worker."""
        return flag_from_chief(self.strategy, flag) if self.multi_worker else bool(flag)

    def global_batch(self, config):
        """`config` with the global batch size: --batch-size times the workers."""
        return dataclasses.replace(config, batch_size=config.batch_size * self.workers)

    def leave(self):
        """A worker that is not the chief removes its scratch folder."""
        if self.scratch is not None:
            remove_scratch(self.scratch)
            self.scratch = None

    def hand_over(self, model, say):
        """After training: under multi_worker each worker states its final weights' digest (equal
        digests: identical models); a worker that is not the chief then removes its scratch folder
        and waits for the chief to evaluate and export. True on the chief, which goes on."""
        if not self.multi_worker:
            return True
        say(f"Worker {self.index}: final weights {weights_digest(model)}")
        if self.chief:
            return True
        self.leave()
        say("Waiting for the chief (worker 0) to evaluate and export.")
        wait_for_chief(self.strategy)
        return False


def is_multi_worker(strategy_):
    return isinstance(strategy_, tf.distribute.MultiWorkerMirroredStrategy)


def num_workers(strategy_):
    return strategy_.extended._num_workers if is_multi_worker(strategy_) else 1


def is_chief(strategy_):
    return not is_multi_worker(strategy_) or strategy_.cluster_resolver.task_id == 0


def scratch_dir():
    """Where a non-chief worker writes what the chief writes for real (removed at the end)."""
    return tempfile.mkdtemp(prefix="worker-scratch-")


def remove_scratch(path):
    shutil.rmtree(path, ignore_errors=True)


# === Broadcast from the chief ===


def _all_reduce(strategy_, values, chief_only):
    """Sums each tensor over all replicas (of all workers): the chief's values only, or the mean."""

    def replica_fn(*tensors):
        context = tf.distribute.get_replica_context()
        if chief_only:
            weight = tf.cast(context.replica_id_in_sync_group == 0, tf.float64)
        else:
            weight = tf.constant(1.0 / strategy_.num_replicas_in_sync, tf.float64)
        return [context.all_reduce("SUM", tf.cast(t, tf.float64) * weight) for t in tensors]

    results = strategy_.run(tf.function(replica_fn), args=tuple(tf.convert_to_tensor(v) for v in values))
    return [
        tf.cast(strategy_.experimental_local_results(r)[0], v.dtype) for r, v in zip(results, values)
    ]


def broadcast(strategy_, values):
    """The chief's values of a list of tensors, on every worker."""
    return _all_reduce(strategy_, values, chief_only=True)


def broadcast_state(strategy_, model, initial_epoch):
    """Gives every worker the chief's weights, optimizer state and starting epoch."""
    variables = list(model.weights)
    seen = {id(v) for v in variables}
    for optimizer in optimizers(model):  # a GAN has one per network
        variables += [v for v in optimizer.variables if id(v) not in seen]
        seen.update(id(v) for v in optimizer.variables)
    values = broadcast(strategy_, [tf.convert_to_tensor(v) for v in variables] + [tf.constant(initial_epoch)])
    for variable, value in zip(variables, values[:-1]):
        variable.assign(value)
    return int(values[-1].numpy())


def average_local_state(strategy_, model):
    """Averages the non-trainable weights each replica updates on its own (batch-norm moving
    statistics) so every worker holds the same model; run at each epoch's end."""
    variables = [v for v in model.non_trainable_weights if "float" in str(v.dtype)]
    for variable, value in zip(variables, _all_reduce(strategy_, variables, chief_only=False)):
        variable.assign(value)


def optimizers(model):
    """The model's optimizers: `model.optimizer` and any other optimizer attribute."""
    found = [model.optimizer] if model.optimizer is not None else []
    for value in vars(model).values():
        if isinstance(value, keras.optimizers.Optimizer) and all(value is not o for o in found):
            found.append(value)
    return found


def flag_from_chief(strategy_, flag):
    """A boolean the chief decided (e.g. "this run is already complete"), on every worker."""
    return bool(broadcast(strategy_, [tf.constant(float(flag))])[0].numpy() > 0.5)


def weights_digest(model):
    """A SHA-256 of every weight's bytes: equal digests mean identical weights."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


# === The loop ===


def distribute(strategy_, dataset):
    """Shards a global-batch dataset: by files where it reads files, else by data (AUTO)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.AUTO
    return strategy_.experimental_distribute_dataset(dataset.with_options(options))


def fit(model, train, validation, epochs, callbacks, verbose):
    """`model.fit`'s loop on `strategy.run`: the same callbacks, history and resume.

    Args:
        model: keras.Model. Built and compiled under the strategy's scope.
        train: tf.data.Dataset. Batched with the global batch size.
        validation: tf.data.Dataset or None.
        epochs: int. The last epoch (a resumed run starts at the backup's epoch).
        callbacks: list of keras.callbacks.Callback.
        verbose: int. 0, 1 or 2 as in `fit`.

    Returns:
        The `keras.callbacks.History` of this call.
    """
    strategy_ = model.distribute_strategy
    if model.optimizer is not None and not model.optimizer.built:
        with strategy_.scope():
            model.optimizer.build(model.trainable_variables)
    train_batches = distribute(strategy_, train)
    validation_batches = distribute(strategy_, validation) if validation is not None else None

    @tf.function
    def train_function(batch):
        logs = strategy_.run(model.train_step, args=(batch,))
        return {k: strategy_.reduce("MEAN", v, axis=None) for k, v in logs.items()}

    @tf.function
    def test_function(batch):
        strategy_.run(model.test_step, args=(batch,))

    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
        steps=_steps_per_epoch(train, num_workers(strategy_)), model=model,
    )
    model.stop_training = False
    model._initial_epoch = None
    callback_list.on_train_begin()
    # The chief's BackupAndRestore set the epoch and weights of a resumed run; share them.
    initial_epoch = broadcast_state(strategy_, model, model._initial_epoch or 0)
    logs, epoch_logs = {}, None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step, batch in enumerate(train_batches):
            callback_list.on_train_batch_begin(step)
            logs = {k: float(v) for k, v in train_function(batch).items()}
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = _metric_results(model) or dict(logs)
        average_local_state(strategy_, model)
        if validation_batches is not None and not model.stop_training:
            model.reset_metrics()
            for batch in validation_batches:
                test_function(batch)
            epoch_logs.update({f"val_{k}": v for k, v in _metric_results(model).items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


def _steps_per_epoch(dataset, workers):
    batches = int(dataset.cardinality())
    return -(-batches // workers) if batches > 0 else None


def _metric_results(model):
    # Read in cross-replica context: each metric's on-read variables are summed over all workers.
    return {k: float(v) for k, v in model.get_metrics_result().items()}
