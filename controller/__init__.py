"""The controller: specs from requests, states from observations, the reconcile loop, the
store and the backends."""
