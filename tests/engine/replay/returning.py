"""Returning customers: several decisions per customer, correlated through the customer.

Each customer has fixed features (plus a little noise per visit) and a random effect u ~ N(0,
sd_customer²) added to every reward they earn, so the rows of one customer are correlated and
only customers are independent. Expected reward of offer a: x @ theta[a] + bias[a] (+ u, whose
mean is 0), so a policy's true value is the population mean of its offers' expected rewards.
Everything is drawn for many seeds at once (arrays of shape (n_seeds, n_rounds)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReturningCustomers:
    n_actions: int = 3
    n_features: int = 2
    sd_customer: float = 1.5
    sd_visit: float = 0.3
    noise: float = 1.0

    def parameters(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(12345)
        theta = rng.normal(size=(self.n_actions, self.n_features))
        bias = rng.normal(scale=0.5, size=self.n_actions)
        return theta, bias

    def contexts(self, rng: np.random.Generator, shape: tuple[int, int], visits: int) -> np.ndarray:
        """Features of ``shape`` = (n_seeds, n_customers) customers seen ``visits`` times each:
        array of shape (n_seeds, n_customers * visits, n_features), customer-major."""
        base = rng.normal(size=(*shape, 1, self.n_features))
        x = base + self.sd_visit * rng.normal(size=(*shape, visits, self.n_features))
        return x.reshape(shape[0], shape[1] * visits, self.n_features)

    def expected(self, x: np.ndarray) -> np.ndarray:
        theta, bias = self.parameters()
        return x @ theta.T + bias

    def target(self, x: np.ndarray) -> np.ndarray:
        """A deterministic target policy: the offer that is best for a slightly wrong model."""
        theta, bias = self.parameters()
        return np.argmax(x @ (theta + 0.5).T + bias, axis=-1)

    def true_value(self, n: int = 2_000_000) -> float:
        x = self.contexts(np.random.default_rng(99), (1, n), 1)[0]
        q = self.expected(x)
        return float(q[np.arange(n), self.target(x)].mean())

    def logs(
        self, n_seeds: int, n_customers: int, visits: int, seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Uniformly logged decisions for ``n_seeds`` independent samples of customers."""
        rng = np.random.default_rng(seed)
        k = self.n_actions
        x = self.contexts(rng, (n_seeds, n_customers), visits)
        n = n_customers * visits
        customer = np.repeat(np.arange(n_customers), visits)
        u = self.sd_customer * rng.normal(size=(n_seeds, n_customers))
        action = rng.integers(0, k, size=(n_seeds, n))
        q = self.expected(x)
        reward = (
            np.take_along_axis(q, action[..., None], axis=-1)[..., 0]
            + u[:, customer]
            + self.noise * rng.normal(size=(n_seeds, n))
        )
        return {
            "context": x,
            "action": action,
            "propensity": np.full((n_seeds, n), 1.0 / k),
            "reward": reward,
            "customer": customer,
            "target": self.target(x),
        }
