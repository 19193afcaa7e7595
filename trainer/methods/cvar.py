"""CVAR: conditional variational warm-up of item-ID embeddings (Zhao et al. SIGIR 2022; spec 4.5).

With e_i the backbone's frozen item-ID embedding and s(x) the item's side information (private
N(0,1) tables):
  mu, logvar = enc(e_i)            mu_p, logvar_p = enc_p(s(x))
  reg   = sum_batch |mu - mu_p|^2 + |exp(logvar/2) - exp(logvar_p/2)|^2   (2-Wasserstein, diagonal)
  z     = mu + 1e-4 exp(logvar/2) eps,   z_p = mu_p + 1e-4 exp(logvar_p/2) eps'
  e     = dec([z ; count]),              e_p = dec([z_p ; count])
  loss  = BCE(backbone(e_p, x)) + mean_batch |e - e_i|^2 + 1e-4 reg
The warm embedding written into the table is e_p (side information and count only). `cvar_init`
(Init Only) is `--set cvar.init_only=true`.
"""
from typing import List

import tensorflow as tf

from trainer import features, protocol
from trainer.methods.generator import GeneratorMethod, SideInfo, uniform_001

keras = tf.keras
NOISE_SCALE = 1e-4  # the reference scales the reparameterisation noise by 1e-4
REG_WEIGHT = 1e-4


def _linear(dim, name):
    return keras.layers.Dense(dim, kernel_initializer=uniform_001(), bias_initializer=uniform_001(),
                              name=name)


class CVAR(GeneratorMethod):
    name = "cvar"
    defaults = {**GeneratorMethod.defaults, "iters": 10}  # 10 on MovieLens, 1 on Taobao (run.sh)
    # Tuned (issue 17): steps per batch (1 on Taobao, 10 on MovieLens), warm rounds and their data.
    search_space = {"iters": {"type": "int", "min": 1, "max": 10},
                    "warm_epochs": {"type": "int", "min": 1, "max": 5},
                    "warm_data": {"type": "choice", "values": ["current", "cumulative"]}}

    def build_modules(self, backbone) -> None:
        dim = backbone.embed_dim
        self.side = SideInfo(backbone.config, backbone.vocab_sizes, dim, name="cvar_side")
        self.mu, self.logvar = _linear(dim, "mu_enc"), _linear(dim, "logvar_enc")
        self.mu_p, self.logvar_p = _linear(dim, "mu_p_enc"), _linear(dim, "logvar_p_enc")
        self.decoder = _linear(dim, "decoder")

    def generator_variables(self) -> List[tf.Variable]:
        layers = (self.side, self.mu, self.logvar, self.mu_p, self.logvar_p, self.decoder)
        return [v for layer in layers for v in layer.trainable_variables]

    def _decode(self, mu, logvar, batch, training):
        z = mu
        if training:
            z = mu + NOISE_SCALE * tf.exp(logvar / 2) * tf.random.normal(tf.shape(mu))
        count = tf.cast(batch["count"], tf.float32)[:, None]
        return self.decoder(tf.concat([z, count], axis=1))

    def generate(self, backbone, batch, training):
        s = self.side(batch)
        return self._decode(self.mu_p(s), self.logvar_p(s), batch, training)

    def generator_loss(self, backbone, batch, training):
        e_i = tf.stop_gradient(tf.gather(backbone.item_table, batch[features.ITEM_ID]))
        s = self.side(batch)
        mu, logvar = self.mu(e_i), self.logvar(e_i)
        mu_p, logvar_p = self.mu_p(s), self.logvar_p(s)
        reg = tf.reduce_sum(tf.square(mu - mu_p)
                            + tf.square(tf.exp(logvar / 2) - tf.exp(logvar_p / 2)))
        e_hat = self._decode(mu, logvar, batch, training)
        e_hat_p = self._decode(mu_p, logvar_p, batch, training)
        recon = tf.reduce_mean(tf.reduce_sum(tf.square(e_hat - e_i), axis=1))
        logits = backbone.call_with_item_embedding(e_hat_p, batch, training=training)
        bce = protocol.bce_from_logits(batch[features.LABEL], logits)
        return bce + recon + REG_WEIGHT * reg
