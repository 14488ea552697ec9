"""Sweeps over config axes: the plan, what is measured at each point, scaling exponents, reports and plots."""
