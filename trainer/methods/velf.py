"""VELF, Variational Embedding Learning Framework (Xu et al., "Alleviating Cold-start Problem in
CTR Prediction with A Variational Embedding Learning Framework", WWW 2022).

Not in the CSDM authors' code (D22) and its full text is not in this workspace. Sources: the VELF
abstract (arXiv 2201.10980, read through the project's search tool), the CSDM paper's summary
("learn probabilistic embeddings"), and the standard variational-inference construction the
abstract names: probabilistic ID embeddings, priors parameterised by side information
("trainable priors"), priors regularised towards a fixed prior ("regularized priors"), one
end-to-end training of the CTR model on the evidence lower bound. Everything below that those
sources do not state is our assumption:
  - only item IDs are probabilistic (the task is item cold-start; the paper also treats users);
  - posterior q(z_i) = N(mu_i, diag sigma_i^2): mu_i is the backbone's item-table row, log
    sigma_i^2 a per-item table initialised to `posterior_logvar`;
  - prior p(z_i | a_i) = N(m(a_i), diag exp(v(a_i))), with m = Linear -> ReLU -> Linear and
    v = Linear on a_i, the item's side information from the backbone's tables without item_id
    (the prior must exist for an item never seen), count included as for the other methods;
  - hyper-prior N(0, hyper_prior_std^2 I);
  - loss per batch, means over rows: BCE(f(z, x)) + kl_weight KL(q || p) + prior_weight KL(p ||
    hyper-prior), z = mu + sigma * eps (reparameterisation); it replaces the plain pretraining
    (same initialisation and batch order as the Trainer's for the seed);
  - cold items: the posterior of an item never seen is its prior, so new items' rows are set to
    the prior mean m(a_i) after pretraining; the warm phases are the protocol's plain ID
    fine-tune of the means (no KL there), and prediction uses the means (no sampling).
"""
import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.base import ColdStartMethod, copy_weights, fresh_backbone
from trainer.methods.generator import (backbone_side_info, first_row_per_item, uniform_001,
                                       write_rows)

keras = tf.keras


def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p) -> tf.Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) per row, summed over dimensions."""
    return 0.5 * tf.reduce_sum(
        logvar_p - logvar_q + (tf.exp(logvar_q) + tf.square(mu_q - mu_p)) / tf.exp(logvar_p) - 1.0,
        axis=-1)


class VELF(ColdStartMethod):
    name = "velf"
    defaults = {
        "kl_weight": 1e-3,          # weight of KL(posterior || learned prior)
        "prior_weight": 1e-4,       # weight of KL(learned prior || hyper-prior)
        "hyper_prior_std": 1.0,     # the regularising prior N(0, std^2 I)
        "posterior_logvar": -9.2,   # initial log sigma^2 of every item (sigma ~ 0.01, the init scale)
    }
    bounds = {"kl_weight": (0.0, None), "prior_weight": (0.0, None),
              "hyper_prior_std": (0.0, None), "posterior_logvar": (None, None)}
    search_space = {"kl_weight": {"type": "float", "min": 1e-4, "max": 1e-1, "sampling": "log"},
                    "prior_weight": {"type": "float", "min": 1e-5, "max": 1e-2, "sampling": "log"}}

    @classmethod
    def check(cls, options):
        if options["hyper_prior_std"] <= 0:
            raise ValueError(f"hyper_prior_std must be above 0, not {options['hyper_prior_std']:g}")

    def prior(self, model, batch):
        a = backbone_side_info(model, batch, exclude=(features.ITEM_ID,))
        return self.prior_mean(a), self.prior_logvar(a)

    def prepare(self, backbone, context, config) -> None:
        self.pretrain(backbone, context.pretrain_data, config)
        self.write_prior_means(backbone, context.new_item_rows, config)

    def pretrain(self, backbone, base, config) -> None:
        """Pretrains a fresh copy of `backbone` on the VELF loss and copies it into `backbone`."""
        o = self.options
        model = fresh_backbone(backbone, self.seed, base)
        dim = model.embed_dim
        self.prior_mean = keras.Sequential([
            keras.layers.Dense(dim, activation="relu", kernel_initializer=uniform_001(),
                               bias_initializer=uniform_001(), name="prior_mean_0"),
            keras.layers.Dense(dim, kernel_initializer=uniform_001(),
                               bias_initializer=uniform_001(), name="prior_mean_1")])
        self.prior_logvar = keras.layers.Dense(dim, kernel_initializer=uniform_001(),
                                               bias_initializer=uniform_001(), name="prior_logvar")
        self.posterior_logvar = tf.Variable(
            tf.fill(model.item_table.shape, float(o["posterior_logvar"])), name="posterior_logvar")
        self.prior(model, {k: v[:2] for k, v in base.items()})
        variables = (model.trainable_variables + self.prior_mean.trainable_variables
                     + self.prior_logvar.trainable_variables + [self.posterior_logvar])
        hyper_logvar = float(2 * np.log(o["hyper_prior_std"]))

        def loss_fn(batch, flag):
            items = batch[features.ITEM_ID]
            mu_q = tf.gather(model.item_table, items)
            logvar_q = tf.gather(self.posterior_logvar, items)
            z = mu_q + tf.exp(logvar_q / 2) * tf.random.normal(tf.shape(mu_q))
            logits = model.call_with_item_embedding(z, batch, training=True)
            mu_p, logvar_p = self.prior(model, batch)
            kl_posterior = kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)
            kl_prior = kl_diag_gaussians(mu_p, logvar_p, tf.zeros_like(mu_p),
                                         tf.fill(tf.shape(mu_p), hyper_logvar))
            return (protocol.bce_from_logits(batch[features.LABEL], logits)
                    + o["kl_weight"] * tf.reduce_mean(kl_posterior)
                    + o["prior_weight"] * tf.reduce_mean(kl_prior))

        self.losses = protocol.train(model, base, variables, config, config.pretrain_epochs,
                                     self.seed, loss_fn=loss_fn, phase="VELF pretraining on base")
        copy_weights(model, backbone)

    def write_prior_means(self, backbone, warm_a, config) -> None:
        items = first_row_per_item(warm_a)
        means = [self.prior(backbone, batch)[0]
                 for batch in protocol.batches(items, config.batch_size, None)]
        write_rows(backbone, items[features.ITEM_ID], tf.concat(means, axis=0),
                   "overwrite after base")
