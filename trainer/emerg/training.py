"""EmerG's three stages (spec 8): pretraining on old items, meta-training over per-item tasks,
and per-item warm-up of psi at test time. Every step is one tf.function; tasks and items are
vectorised (padded [T, P] task batches with masks; stacked per-item psi with per-item Adam).
"""
import dataclasses
from typing import Dict, Iterator, List, Tuple

import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.emerg.model import EmerGEval, EmerGNet
from trainer.optim import TorchAdam

TIME = "timestamp"
PAIRS = (0, 1, 2, None)  # meta-epoch e uses chunk pair PAIRS[e % 4]: a->b, b->c, c->d, skip


@dataclasses.dataclass
class Hyper:
    """The numeric settings of one run (filled from the method's options)."""
    pretrain_lr: float = 0.005
    pretrain_epochs: int = 2
    pretrain_batch: int = 512
    pretrain_shuffle: bool = True
    meta_lr: float = 0.001
    meta_epochs: int = 11
    inner_lr: float = 0.01
    inner_steps: int = 1
    inner: bool = True
    alpha: float = 0.1
    second_order: bool = False
    detached_hypernet: bool = False
    tasks_per_step: int = 1
    warm_lr: float = 0.01
    warm_epochs: int = 11
    warm_rows: int = 16384
    weight_decay: float = 2.92e-7
    jit_compile: bool = False


def masked_task_mean(values: tf.Tensor, mask: tf.Tensor, tasks: int) -> tf.Tensor:
    """[T * P] -> [T]: the mean of each task's real rows (rows t*P .. t*P+P-1)."""
    values = tf.reshape(values * mask, [tasks, -1])
    return tf.reduce_sum(values, axis=1) / tf.maximum(tf.reduce_sum(tf.reshape(mask, [tasks, -1]),
                                                                    axis=1), 1.0)


def row_bce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32),
                                                   logits=logits)


# -- stage 0: pretraining ------------------------------------------------------------------------
def pretrain(net: EmerGNet, base: protocol.Arrays, hp: Hyper, seed: int,
             global_graph: bool = False) -> List[float]:
    """BCE on base, Adam (coupled L2) over every weight the loss reaches; epoch mean losses."""
    variables = net.trainable_variables
    optimizer = TorchAdam(variables, hp.pretrain_lr, hp.weight_decay)

    @tf.function(jit_compile=hp.jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            logits = (net.global_logits(batch) if global_graph
                      else net(batch, detached=hp.detached_hypernet))
            loss = tf.reduce_mean(row_bce(batch[features.LABEL], logits))
        optimizer.apply_gradients(tape.gradient(loss, variables))
        return loss

    losses = []
    for epoch in range(hp.pretrain_epochs):
        shuffle = seed + epoch if hp.pretrain_shuffle else None
        values = [float(step(b)) for b in protocol.batches(base, hp.pretrain_batch, shuffle)]
        losses.append(float(np.mean(values)))
    return losses


# -- stage 1: meta-training ------------------------------------------------------------------------
def item_chunks(base: protocol.Arrays) -> List[Tuple[int, np.ndarray]]:
    """[(item, its rows' indices in time order)], items ascending; rows with equal time keep
    their order in `base`."""
    items = base[features.ITEM_ID]
    time = base[TIME] if TIME in base else np.zeros(len(items))
    order = np.lexsort((np.arange(len(items)), time, items))
    sorted_items = items[order]
    starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]])
    ends = np.r_[starts[1:], len(items)]
    return [(int(sorted_items[s]), order[s:e]) for s, e in zip(starts, ends)]


def padded_length(n: int) -> int:
    """Task rows are padded to a multiple of 16 below 64, else of 64: few shapes are traced."""
    step = 16 if n <= 64 else 64
    return max(step, -(-n // step) * step)


def tasks(base: protocol.Arrays, pair: int, per_step: int) -> Iterator[Tuple[dict, int, int]]:
    """Task batches of chunk pair `pair` (0: a->b, 1: b->c, 2: c->d; spec 2.4): each item's rows
    in 4 chunks of n // 4 (the remainder dropped), support = chunk pair, query = chunk pair + 1.
    Yields ({support: arrays [T*P], support_mask, query, query_mask}, T, P), items ascending."""
    chosen = []
    for item, rows in item_chunks(base):
        size = len(rows) // 4
        if size == 0:
            continue
        chosen.append((rows[pair * size:(pair + 1) * size], rows[(pair + 1) * size:(pair + 2) * size]))
    for start in range(0, len(chosen), per_step):
        group = chosen[start:start + per_step]
        length = padded_length(max(len(s) for s, _ in group))
        out = {}
        for name, which in (("support", 0), ("query", 1)):
            index = np.zeros((len(group), length), np.int64)
            mask = np.zeros((len(group), length), np.float32)
            for t, task in enumerate(group):
                rows = task[which]
                index[t, :len(rows)] = rows
                index[t, len(rows):] = rows[0]  # padding repeats a real row of the same item
                mask[t, :len(rows)] = 1.0
            out[name] = {k: v[index.reshape(-1)] for k, v in base.items()}
            out[name + "_mask"] = mask.reshape(-1)
        yield out, len(group), length


class MetaTrainer:
    """One outer step per task batch (eqs. 11-15):
    psi = {A0 = H_omega(c_v), e_v}; L_cold = BCE(D_tr; psi); psi' = psi - eta grad_psi L_cold;
    L_warm = BCE(D_te; psi'); minimise mean_v [alpha L_cold + (1 - alpha) L_warm] over theta,
    omega and the item-ID table. First-order: the inner gradient is a constant, so omega and the
    item table still get gradients through psi' = psi - eta g."""

    def __init__(self, net: EmerGNet, hp: Hyper):
        self.net, self.hp = net, hp
        self.variables = net.trainable_variables
        self.optimizer = TorchAdam(self.variables, hp.meta_lr, hp.weight_decay)
        self.step = tf.function(self._step, jit_compile=hp.jit_compile, autograph=False)

    def psi(self, first_rows) -> Tuple[tf.Tensor, tf.Tensor]:
        e = self.net.item_embedding(first_rows)
        return self.net.initial_graph(first_rows, e, self.hp.detached_hypernet), e

    def task_loss(self, rows, mask, a, e, num_tasks) -> tf.Tensor:
        """[T]: each task's mean BCE with its psi (a [T, F, F], e [T, d]) on its rows."""
        task_of_row = tf.repeat(tf.range(num_tasks), mask.shape[0] // num_tasks)
        logits = self.net.logits(rows, tf.gather(a, task_of_row), tf.gather(e, task_of_row))
        return masked_task_mean(row_bce(rows[features.LABEL], logits), mask, num_tasks)

    def inner_update(self, support, mask, a, e, num_tasks):
        """psi' after `inner_steps` gradient steps on L_cold; returns (L_cold [T] at psi, a', e').
        (Plain Python control flow: the step is traced with autograph off.)"""
        hp, adapt_graph = self.hp, self.net.graph != "shared"
        l_cold = None
        for _ in range(hp.inner_steps if hp.inner else 1):
            with tf.GradientTape() as tape:
                tape.watch([a, e])
                loss = self.task_loss(support, mask, a, e, num_tasks)
                total = tf.reduce_sum(loss)  # task t's psi only gets task t's gradient
            if l_cold is None:
                l_cold = loss
            if hp.inner:
                g_a, g_e = [tf.convert_to_tensor(g) for g in tape.gradient(total, [a, e])]
                if not hp.second_order:
                    g_a, g_e = tf.stop_gradient(g_a), tf.stop_gradient(g_e)
                if adapt_graph:
                    a = a - hp.inner_lr * g_a
                e = e - hp.inner_lr * g_e
        return l_cold, a, e

    def objective(self, batch, num_tasks: int, length: int) -> tf.Tensor:
        """mean_v [alpha L_cold + (1 - alpha) L_warm] of a task batch (eq. 12)."""
        support, query = batch["support"], batch["query"]
        first = {k: v[::length] for k, v in support.items()}  # item features of each task
        a, e = self.psi(first)
        l_cold, a2, e2 = self.inner_update(support, batch["support_mask"], a, e, num_tasks)
        l_warm = self.task_loss(query, batch["query_mask"], a2, e2, num_tasks)
        return tf.reduce_mean(self.hp.alpha * l_cold + (1.0 - self.hp.alpha) * l_warm)

    def _step(self, batch, num_tasks: int, length: int):
        """`num_tasks` T and `length` P are Python ints: one trace per (T, P)."""
        with tf.GradientTape() as outer:
            loss = self.objective(batch, num_tasks, length)
        self.optimizer.apply_gradients(outer.gradient(loss, self.variables))
        return loss

    def run(self, base: protocol.Arrays, log=None) -> List[float]:
        """All meta-epochs; returns the loss of every outer step."""
        losses = []
        for epoch in range(self.hp.meta_epochs):
            pair = PAIRS[epoch % 4]
            if pair is None:
                continue
            for batch, num_tasks, length in tasks(base, pair, self.hp.tasks_per_step):
                losses.append(float(self.step(batch, num_tasks, length)))
            if log:
                log.note(f"meta-epoch {epoch} (pair {'abc'[pair]}->{'bcd'[pair]}): "
                         f"loss {np.mean(losses[-100:]):.4f}")
        return losses


def reinit_item_table(net: EmerGNet, seed: int) -> None:
    """"Randomized item ID embedding" before meta-training: U(-0.01, 0.01) again (spec 8.2)."""
    table = net.item_table
    table.assign(tf.random.stateless_uniform(table.shape, [seed, 8002], -0.01, 0.01))


# -- stage 2: per-item warm-up ---------------------------------------------------------------------
def init_psi(model: EmerGEval, items: protocol.Arrays) -> None:
    """Cold start: psi_v = {H_omega(item features of v), e_v} for every slot; Adam state reset.
    `items`: one row per slot item, in slot order."""
    net = model.net
    parts_a, parts_e = [], []
    for batch in protocol.batches(items, 4096, None):
        e = net.item_embedding(batch)
        parts_a.append(net.initial_graph(batch, e))
        parts_e.append(e)
    model.psi_a.assign(tf.concat(parts_a, axis=0))
    model.psi_e.assign(tf.concat(parts_e, axis=0))
    for v in (model.m_a, model.v_a, model.m_e, model.v_e, model.steps):
        v.assign(tf.zeros_like(v))


class WarmUp:
    """Adam over each item's own psi only, full batch on its rows of a warm split, `warm_epochs`
    + 1 steps; the Adam state (m, v, step count) of every item is kept between splits. All items
    of a group step together: their losses are summed, so each psi_v gets its own gradient."""

    def __init__(self, model: EmerGEval, hp: Hyper, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.model, self.hp = model, hp
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon
        self.step = tf.function(self._step, jit_compile=hp.jit_compile)

    def _adam(self, p, g, m, v, t):
        """PyTorch Adam with coupled L2, per item (t: [n] step counts, broadcast)."""
        t = tf.reshape(t, [-1] + [1] * (len(p.shape) - 1))
        g = g + self.hp.weight_decay * p
        m = self.b1 * m + (1.0 - self.b1) * g
        v = self.b2 * v + (1.0 - self.b2) * tf.square(g)
        m_hat = m / (1.0 - tf.pow(self.b1, t))
        v_hat = v / (1.0 - tf.pow(self.b2, t))
        return p - self.hp.warm_lr * m_hat / (tf.sqrt(v_hat) + self.eps), m, v

    def _step(self, rows, local, slots):
        """One Adam step for the items `slots` [n] on `rows`; local[r]: row r's index in slots."""
        model, n = self.model, tf.shape(slots)[0]
        idx = slots[:, None]
        a, e = tf.gather(model.psi_a, slots), tf.gather(model.psi_e, slots)
        with tf.GradientTape() as tape:
            tape.watch([a, e])
            logits = model.net.logits(rows, tf.gather(a, local), tf.gather(e, local))
            per_item = tf.math.unsorted_segment_mean(row_bce(rows[features.LABEL], logits),
                                                     local, n)
            loss = tf.reduce_sum(per_item)
        g_a, g_e = [tf.convert_to_tensor(g) for g in tape.gradient(loss, [a, e])]
        t = tf.gather(model.steps, slots) + 1.0
        new_e, m_e, v_e = self._adam(e, g_e, tf.gather(model.m_e, slots),
                                     tf.gather(model.v_e, slots), t)
        model.psi_e.scatter_nd_update(idx, new_e)
        model.m_e.scatter_nd_update(idx, m_e)
        model.v_e.scatter_nd_update(idx, v_e)
        if model.net.graph != "shared":  # a shared graph is not item-specific: not adapted
            new_a, m_a, v_a = self._adam(a, g_a, tf.gather(model.m_a, slots),
                                         tf.gather(model.v_a, slots), t)
            model.psi_a.scatter_nd_update(idx, new_a)
            model.m_a.scatter_nd_update(idx, m_a)
            model.v_a.scatter_nd_update(idx, v_a)
        model.steps.scatter_nd_update(idx, t)
        return loss / tf.cast(n, tf.float32)

    def groups(self, arrays: protocol.Arrays) -> Iterator[Tuple[protocol.Arrays, np.ndarray,
                                                                np.ndarray]]:
        """(rows, local, slots) for groups of whole items of at most `warm_rows` rows."""
        slots = self.model.slots(arrays[features.ITEM_ID]).numpy()
        order = np.argsort(slots, kind="stable")
        unique, starts, counts = np.unique(slots[order], return_index=True, return_counts=True)
        begin = 0
        while begin < len(unique):
            end, rows = begin, 0
            while end < len(unique) and (end == begin or rows + counts[end] <= self.hp.warm_rows):
                rows += counts[end]
                end += 1
            picked = order[starts[begin]:starts[end - 1] + counts[end - 1]]
            local = np.searchsorted(unique[begin:end], slots[picked]).astype(np.int32)
            yield ({k: v[picked] for k, v in arrays.items()}, local,
                   unique[begin:end].astype(np.int32))
            begin = end

    def run(self, arrays: protocol.Arrays) -> List[float]:
        """warm_epochs + 1 steps on every item of `arrays`; mean per-item loss of each step."""
        losses = []
        for rows, local, slots in self.groups(arrays):
            for _ in range(self.hp.warm_epochs + 1):
                losses.append(float(self.step(rows, local, slots)))
        return losses
