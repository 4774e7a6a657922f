"""kubeforge's tests: a package, so that no test folder is imported as the stdlib `operator`."""
