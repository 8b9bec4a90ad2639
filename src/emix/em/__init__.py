"""The EM loop, its convergence monitor and its initialisations."""
