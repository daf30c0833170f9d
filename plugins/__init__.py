"""Every built-in component, one sub-package per registry kind."""
