"""Multi-scenario backbones for the `per_domain` protocol (Diff-MSR, spec diff_msr.md section 3).

Every row carries its domain as an integer feature (`domain_field`, the transformed vocabulary
index; there are `vocab_sizes[domain_field]` domains, the OOV bucket included). `call` returns
the logit [B] of each row's own domain. Besides the `CTRBackbone` interface each backbone exposes
what Diff-MSR's stage 4 needs:
- `pair_embedding(inputs)`: [B, 2, d], the user and item embeddings (z0, spec 5.1);
- `domain_logit(pair, domain_index, training)`: domain `domain_index`'s head on a pair embedding,
  with that domain's embedding put back as the third field (the "scenario calibration", spec 1);
- `domain_variables(domain_index)`: every variable (trainable or not) that is that domain's
  own; changing them changes no other domain's predictions (AITM: none before it in its chain).
  Which variables these are is spec decision 12.5, reconstructed (per backbone below).
- `specialise()`: the pre-train & fine-tune family pretrains one shared head and copies it into
  each domain's head before fine-tuning (spec 3); a no-op for the multi-task family.

The heads read the user, item and domain embeddings only (ctn features are ignored), because a
generated row has nothing else. Dense layers of the multi-task family use the Keras default
(Glorot-uniform) initialiser and no BatchNorm (no code was released for them, spec 3); the
embedding tables are the `CTRBackbone` ones.
"""
from typing import Dict, List

import tensorflow as tf

from trainer import backbones, features

keras = tf.keras


def _mlp(dims, name) -> keras.Sequential:
    """Linear -> ReLU per width."""
    return keras.Sequential([keras.layers.Dense(w, activation="relu", name=f"{name}_{i}")
                             for i, w in enumerate(dims)], name=name)


def _tower(dims, name) -> keras.Sequential:
    """MLP(dims) -> Linear(1)."""
    return keras.Sequential([*_mlp(dims, name).layers, keras.layers.Dense(1, name=f"{name}_out")],
                            name=name)


class MultiScenario(backbones.CTRBackbone):
    """Shared embedding; subclasses give `domain_logits(fields, training)` -> [B, D]."""

    uses_linear = False
    multi_scenario = True
    # Diff-MSR's classifier-guided window (spec 7): (30, 50) pre-train & fine-tune, (20, 40) MTL.
    noise_window = (20, 40)

    def __init__(self, config: features.FeatureConfig, vocab_sizes: Dict[str, int],
                 embed_dim: int = 16, domain_field: str = "domain", **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        names = [f.name for f in self.id_fields]
        missing = [n for n in (features.USER_ID, features.ITEM_ID, domain_field) if n not in names]
        if missing:
            raise ValueError(f"backbone {self.registry_name}: needs the categorical fields "
                             f"{missing} (it has {names})")
        self.domain_field = domain_field
        self.num_domains = int(vocab_sizes[domain_field])

    def options(self) -> Dict:
        """The constructor arguments beyond (config, vocab_sizes, embed_dim)."""
        return {"domain_field": self.domain_field}

    def get_config(self):
        options = {k: list(v) if isinstance(v, (list, tuple)) else v
                   for k, v in self.options().items()}
        return {**super().get_config(), "options": options}

    def call_with_item_embedding(self, item_emb, inputs, training=False):
        fields = [item_emb] + [self.embed(f.name, inputs[f.name]) for f in self.other_fields]
        return self.routed_logit(tf.stack(fields, axis=1), inputs[self.domain_field], training)

    def routed_logit(self, fields, domain, training):
        """The logit of each row's domain: every domain's head, then a gather."""
        logits = self.domain_logits(fields, training)
        return tf.gather(logits, tf.cast(domain, tf.int32), axis=1, batch_dims=1)

    def domain_logits(self, fields: tf.Tensor, training: bool) -> tf.Tensor:
        """fields: [B, F, d] (item first). Returns [B, D]: every domain's logit for every row."""
        raise NotImplementedError

    def pair_embedding(self, inputs) -> tf.Tensor:
        """[B, 2, d]: (user, item) embeddings, z0 of spec 5.1."""
        return tf.stack([self.embed(features.USER_ID, inputs[features.USER_ID]),
                         self.embed(features.ITEM_ID, inputs[features.ITEM_ID])], axis=1)

    def fields_from_pair(self, pair: tf.Tensor, domain_index) -> tf.Tensor:
        """[B, F, d] in the backbone's field order from a pair embedding and a domain."""
        extra = [f.name for f in self.other_fields
                 if f.name not in (features.USER_ID, self.domain_field)]
        if extra:
            raise ValueError(f"backbone {self.registry_name}: a pair embedding gives only user, "
                             f"item and domain, but the backbone also reads {extra}")
        size = tf.shape(pair)[0]
        e_dom = self.tables[self.domain_field](tf.fill([size], tf.cast(domain_index, tf.int64)))
        by_name = {features.USER_ID: pair[:, 0], self.domain_field: e_dom}
        return tf.stack([pair[:, 1]] + [by_name[f.name] for f in self.other_fields], axis=1)

    def domain_logit(self, pair: tf.Tensor, domain_index, training=False) -> tf.Tensor:
        """[B]: domain `domain_index`'s logit of pair embeddings [B, 2, d]."""
        fields = self.fields_from_pair(pair, domain_index)
        domain = tf.fill([tf.shape(pair)[0]], tf.cast(domain_index, tf.int32))
        return self.routed_logit(fields, domain, training)

    def domain_variables(self, domain_index: int) -> List[tf.Variable]:
        raise NotImplementedError

    def specialise(self) -> None:
        """Pre-train & fine-tune family: copy the shared head into every domain's head."""


def _variables(*layers) -> List[tf.Variable]:
    return [v for layer in layers for v in layer.variables]


@backbones.register("mmoe")
class MMoE(MultiScenario):
    """MMoE (Ma et al. 2018): E expert MLPs on the concatenated embeddings; per domain a softmax
    gate over the experts and a tower. Domain-specific: its gate and tower."""

    def __init__(self, config, vocab_sizes, embed_dim=16, domain_field="domain", num_experts=4,
                 expert_dims=(256, 256), tower_dims=(256,), **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, domain_field, **kwargs)
        self.num_experts, self.expert_dims, self.tower_dims = (num_experts, list(expert_dims),
                                                               list(tower_dims))
        self.experts = [_mlp(expert_dims, f"expert_{e}") for e in range(num_experts)]
        self.gates = [keras.layers.Dense(num_experts, name=f"gate_{d}")
                      for d in range(self.num_domains)]
        self.towers = [_tower(tower_dims, f"tower_{d}") for d in range(self.num_domains)]

    def options(self):
        return {**super().options(), "num_experts": self.num_experts,
                "expert_dims": self.expert_dims, "tower_dims": self.tower_dims}

    def domain_logits(self, fields, training):
        x = self.flat(fields)
        experts = tf.stack([e(x) for e in self.experts], axis=1)  # [B, E, h]
        logits = []
        for gate, tower in zip(self.gates, self.towers):
            weights = tf.nn.softmax(gate(x), axis=1)[:, :, None]
            logits.append(tower(tf.reduce_sum(weights * experts, axis=1))[:, 0])
        return tf.stack(logits, axis=1)

    def domain_variables(self, domain_index):
        return _variables(self.gates[domain_index], self.towers[domain_index])


@backbones.register("ple")
class PLE(MultiScenario):
    """PLE (Tang et al. 2020): `num_levels` CGC levels of shared and per-domain experts; per
    domain a gate over its own and the shared experts; below the last level a shared gate over
    all experts feeds the next level's shared experts; a tower per domain.

    Domain-specific: its last-level experts and gate, and its tower. Its experts and gates on lower
    levels also feed the shared gate, hence every domain, so they stay shared (spec 12.5)."""

    def __init__(self, config, vocab_sizes, embed_dim=16, domain_field="domain", num_levels=2,
                 shared_experts=2, specific_experts=2, expert_dims=(256,), tower_dims=(256,),
                 **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, domain_field, **kwargs)
        self.num_levels, self.shared_experts, self.specific_experts = (
            num_levels, shared_experts, specific_experts)
        self.expert_dims, self.tower_dims = list(expert_dims), list(tower_dims)
        D = self.num_domains
        self.shared = [[_mlp(expert_dims, f"l{l}_shared_{e}") for e in range(shared_experts)]
                       for l in range(num_levels)]
        self.specific = [[[_mlp(expert_dims, f"l{l}_d{d}_expert_{e}")
                           for e in range(specific_experts)] for d in range(D)]
                         for l in range(num_levels)]
        self.gates = [[keras.layers.Dense(specific_experts + shared_experts, name=f"l{l}_gate_{d}")
                       for d in range(D)] for l in range(num_levels)]
        self.shared_gates = [keras.layers.Dense(D * specific_experts + shared_experts,
                                                name=f"l{l}_shared_gate")
                             for l in range(num_levels - 1)]
        self.towers = [_tower(tower_dims, f"tower_{d}") for d in range(D)]

    def options(self):
        return {**super().options(), "num_levels": self.num_levels,
                "shared_experts": self.shared_experts, "specific_experts": self.specific_experts,
                "expert_dims": self.expert_dims, "tower_dims": self.tower_dims}

    @staticmethod
    def _mix(gate, gate_input, experts):
        weights = tf.nn.softmax(gate(gate_input), axis=1)[:, :, None]
        return tf.reduce_sum(weights * tf.stack(experts, axis=1), axis=1)

    def domain_logits(self, fields, training):
        x = self.flat(fields)
        inputs, shared_input = [x] * self.num_domains, x
        for level in range(self.num_levels):
            shared = [e(shared_input) for e in self.shared[level]]
            specific = [[e(inputs[d]) for e in self.specific[level][d]]
                        for d in range(self.num_domains)]
            outputs = [self._mix(self.gates[level][d], inputs[d], specific[d] + shared)
                       for d in range(self.num_domains)]
            if level < self.num_levels - 1:
                everything = [e for per_domain in specific for e in per_domain] + shared
                shared_input = self._mix(self.shared_gates[level], shared_input, everything)
            inputs = outputs
        return tf.stack([t(h)[:, 0] for t, h in zip(self.towers, inputs)], axis=1)

    def domain_variables(self, domain_index):
        last = self.num_levels - 1
        return _variables(*self.specific[last][domain_index], self.gates[last][domain_index],
                          self.towers[domain_index])


class PartitionedNorm(keras.layers.Layer):
    """STAR's partitioned normalisation: (gamma * gamma_d) (x - mu_d) / sqrt(var_d + eps) +
    (beta + beta_d), with batch moments of domain d's rows in training (moving averages for a
    domain absent from the batch, and at inference). Per-domain variables are separate, so that
    a domain owns whole variables."""

    def __init__(self, num_domains, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_domains, self.momentum, self.epsilon = num_domains, momentum, epsilon

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(width,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(width,), initializer="zeros")
        D = self.num_domains

        def per_domain(name, init, trainable=True):
            return [self.add_weight(name=f"{name}_{d}", shape=(width,), initializer=init,
                                    trainable=trainable) for d in range(D)]

        self.gamma_d = per_domain("gamma", "ones")
        self.beta_d = per_domain("beta", "zeros")
        self.moving_mean = per_domain("moving_mean", "zeros", False)
        self.moving_var = per_domain("moving_variance", "ones", False)
        super().build(input_shape)

    def domain_variables(self, d):
        return [self.gamma_d[d], self.beta_d[d], self.moving_mean[d], self.moving_var[d]]

    def call(self, x, domain, training=False):
        """x [B, F], domain [B] -> [B, D, F]: row b normalised as domain d would be."""
        mean = tf.stack(self.moving_mean)  # [D, F]
        var = tf.stack(self.moving_var)
        if training:
            domain = tf.cast(domain, tf.int32)
            count = tf.math.unsorted_segment_sum(tf.ones_like(x[:, :1]), domain, self.num_domains)
            present = count > 0  # [D, 1]
            batch_mean = tf.math.unsorted_segment_sum(x, domain, self.num_domains) / tf.maximum(
                count, 1.0)
            centred = x - tf.gather(batch_mean, domain)
            batch_var = tf.math.unsorted_segment_sum(tf.square(centred), domain,
                                                     self.num_domains) / tf.maximum(count, 1.0)
            for d in range(self.num_domains):  # absent domains keep their statistics exactly
                m = self.momentum
                self.moving_mean[d].assign(tf.where(
                    present[d], m * self.moving_mean[d] + (1 - m) * batch_mean[d],
                    self.moving_mean[d]))
                self.moving_var[d].assign(tf.where(
                    present[d], m * self.moving_var[d] + (1 - m) * batch_var[d],
                    self.moving_var[d]))
            mean = tf.where(present, batch_mean, mean)
            var = tf.where(present, batch_var, var)
        scale = self.gamma[None] * tf.stack(self.gamma_d)  # [D, F]
        shift = self.beta[None] + tf.stack(self.beta_d)
        normalised = (x[:, None, :] - mean[None]) * tf.math.rsqrt(var[None] + self.epsilon)
        return normalised * scale[None] + shift[None]


@backbones.register("star")
class STAR(MultiScenario):
    """STAR (Sheng et al. 2021): partitioned normalisation of the concatenated embeddings, then a
    star-topology FCN whose layer l for domain d uses W_l ⊙ W_ld and b_l + b_ld (W_ld starts at 1,
    b_ld at 0), then Linear(1) in the same star form; plus a shared auxiliary network
    MLP_(aux_dims)(embeddings, the domain's included) -> 1 added to the logit.
    Domain-specific: its W_ld, b_ld of every layer, its PN gamma_d, beta_d and statistics."""

    def __init__(self, config, vocab_sizes, embed_dim=16, domain_field="domain",
                 hidden_dims=(256, 256, 256), aux_dims=(64,), **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, domain_field, **kwargs)
        self.hidden_dims, self.aux_dims = list(hidden_dims), list(aux_dims)
        self.norm = PartitionedNorm(self.num_domains, name="partitioned_norm")
        self.aux = _tower(aux_dims, "auxiliary")
        self.star_built = False

    def options(self):
        return {**super().options(), "hidden_dims": self.hidden_dims, "aux_dims": self.aux_dims}

    def _build_star(self, width):
        self.shared_w, self.shared_b, self.domain_w, self.domain_b = [], [], [], []
        for l, out in enumerate(self.hidden_dims + [1]):
            self.shared_w.append(self.add_weight(name=f"star_{l}_w", shape=(width, out),
                                                 initializer="glorot_uniform"))
            self.shared_b.append(self.add_weight(name=f"star_{l}_b", shape=(out,),
                                                 initializer="zeros"))
            self.domain_w.append([self.add_weight(name=f"star_{l}_w_{d}", shape=(width, out),
                                                  initializer="ones")
                                  for d in range(self.num_domains)])
            self.domain_b.append([self.add_weight(name=f"star_{l}_b_{d}", shape=(out,),
                                                  initializer="zeros")
                                  for d in range(self.num_domains)])
            width = out
        self.star_built = True

    def routed_logit(self, fields, domain, training):
        # PN needs each row's domain in training, so it is routed here, not in domain_logits.
        return tf.gather(self._logits(fields, domain, training), tf.cast(domain, tf.int32),
                         axis=1, batch_dims=1)

    def _logits(self, fields, domain, training):
        x = self.flat(fields)
        if not self.star_built:
            self._build_star(int(x.shape[-1]))
        h = self.norm(x, domain, training=training)  # [B, D, F]
        layers = len(self.shared_w)
        for l in range(layers):
            w = self.shared_w[l][None] * tf.stack(self.domain_w[l])  # [D, in, out]
            b = self.shared_b[l][None] + tf.stack(self.domain_b[l])
            h = tf.einsum("bdi,dio->bdo", h, w) + b[None]
            if l < layers - 1:
                h = tf.nn.relu(h)
        return h[:, :, 0] + self.aux(x)

    def domain_logits(self, fields, training):
        raise NotImplementedError("STAR routes rows by domain itself (partitioned norm)")

    def domain_variables(self, domain_index):
        return (self.norm.domain_variables(domain_index)
                + [w[domain_index] for w in self.domain_w] + [b[domain_index]
                                                              for b in self.domain_b])


class AIT(keras.layers.Layer):
    """AITM's adaptive information transfer: attention over (p, q) with h1, h2, h3 projections;
    w_u = softmax_u(<h2(u), h3(u)> / sqrt(k)); z = sum_u w_u h1(u)."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.h1, self.h2, self.h3 = (keras.layers.Dense(width, name=n) for n in ("h1", "h2", "h3"))

    def call(self, p, q):
        u = tf.stack([p, q], axis=1)  # [B, 2, k]
        scores = tf.reduce_sum(self.h2(u) * self.h3(u), axis=-1) / self.width ** 0.5
        return tf.reduce_sum(tf.nn.softmax(scores, axis=1)[:, :, None] * self.h1(u), axis=1)


@backbones.register("aitm")
class AITM(MultiScenario):
    """AITM (Xi et al. 2021): a tower per domain on the concatenated embeddings, q_d; the domains
    form a chain in index order: z_0 = q_0, z_d = AIT_d(transfer_d(z_{d-1}), q_d); logit_d =
    Linear(z_d). Domain-specific: its tower, the transfer into it, its AIT and output layer.
    A domain's change reaches the domains after it in the chain (never those before): the
    vocabulary orders domains by frequency, so a rare cold domain is near the end (only the OOV
    bucket after it)."""

    def __init__(self, config, vocab_sizes, embed_dim=16, domain_field="domain",
                 tower_dims=(256, 128), **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, domain_field, **kwargs)
        self.tower_dims = list(tower_dims)
        D, width = self.num_domains, tower_dims[-1]
        self.towers = [_mlp(tower_dims, f"tower_{d}") for d in range(D)]
        self.transfers = [None] + [keras.layers.Dense(width, activation="relu",
                                                      name=f"transfer_{d}") for d in range(1, D)]
        self.aits = [None] + [AIT(width, name=f"ait_{d}") for d in range(1, D)]
        self.outs = [keras.layers.Dense(1, name=f"out_{d}") for d in range(D)]

    def options(self):
        return {**super().options(), "tower_dims": self.tower_dims}

    def domain_logits(self, fields, training):
        x = self.flat(fields)
        logits, z = [], None
        for d in range(self.num_domains):
            q = self.towers[d](x)
            z = q if d == 0 else self.aits[d](self.transfers[d](z), q)
            logits.append(self.outs[d](z)[:, 0])
        return tf.stack(logits, axis=1)

    def domain_variables(self, domain_index):
        d = domain_index
        own = [self.towers[d], self.outs[d]] + ([self.transfers[d], self.aits[d]] if d else [])
        return _variables(*own)


class DomainCopies(MultiScenario):
    """Pre-train & fine-tune family (spec 3): the `base` backbone's layers above the embedding,
    once per domain. Until `specialise()` every row goes through head 0 (the one network
    pretrained on all domains); `specialise()` copies head 0 into every head, after which each row
    goes through its domain's head. Domain-specific: its whole head (BatchNorm statistics
    included). In training mode each head sees only its own rows, so its BatchNorm statistics are
    its domain's; a head without rows in a batch is not run."""

    base = ""
    noise_window = (30, 50)

    def __init__(self, config, vocab_sizes, embed_dim=16, domain_field="domain", **head_options):
        super().__init__(config, vocab_sizes, embed_dim, domain_field)
        self.head_options = head_options
        self.heads = [backbones.BACKBONES[self.base](config, vocab_sizes, embed_dim=embed_dim,
                                                     name=f"head_{d}", **head_options)
                      for d in range(self.num_domains)]
        self.specialised = self.add_weight(name="specialised", shape=(), initializer="zeros",
                                           trainable=False)
        self.heads_built = False

    def options(self):
        return {**super().options(), **self.head_options}

    def _head(self, d, fields, training):
        zeros = tf.zeros([tf.shape(fields)[0], 0])  # the heads ignore ctn features
        return self.heads[d].logit(fields, zeros, training)

    def domain_logits(self, fields, training):
        return tf.stack([self._head(d, fields, training) for d in range(self.num_domains)], axis=1)

    def routed_logit(self, fields, domain, training):
        route = tf.where(self.specialised > 0.5, tf.cast(domain, tf.int32), 0)
        if not training or not self.heads_built:
            logits = self.domain_logits(fields, False)  # every head on every row; builds them
            self.heads_built = True
            if not training:
                return tf.gather(logits, route, axis=1, batch_dims=1)
        rows = tf.dynamic_partition(tf.range(tf.shape(fields)[0]), route, self.num_domains)
        parts = tf.dynamic_partition(fields, route, self.num_domains)
        outputs = [tf.cond(tf.size(rows[d]) > 0,
                           lambda d=d: self._head(d, parts[d], True),
                           lambda: tf.zeros([0])) for d in range(self.num_domains)]
        return tf.dynamic_stitch(rows, outputs)

    def specialise(self) -> None:
        if float(self.specialised.numpy()) > 0.5:
            return
        for head in self.heads[1:]:
            for target, source in zip(head.variables, self.heads[0].variables):
                target.assign(source)
        self.specialised.assign(1.0)

    def domain_variables(self, domain_index):
        return list(self.heads[domain_index].variables)


@backbones.register("fnn_md")
class FNNPerDomain(DomainCopies):
    """FNN with a per-domain copy of its MLP (spec 3)."""
    base = "fnn"


@backbones.register("dcn_md")
class DCNPerDomain(DomainCopies):
    """DCN with a per-domain copy of its cross network, MLP and output layer (spec 3)."""
    base = "dcn"


@backbones.register("ipnn_md")
class IPNNPerDomain(DomainCopies):
    """IPNN with a per-domain copy of its product layer's MLP and output (spec 3)."""
    base = "ipnn"
