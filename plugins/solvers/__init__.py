"""Root finders for equilibrium models."""
