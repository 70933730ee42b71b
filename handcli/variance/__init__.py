"""Variance of the refined motion (PAD-Hand §3.4): a last-layer Laplace posterior of the refiner's head with a
heteroscedastic noise model, carried through the reverse diffusion (Algorithm 1), mapped to joints, mesh
vertices and generalized forces.

laplace      closed-form last-layer Laplace (GGN = feature outer products, evidence-chosen prior precision)
reliability  covariates of the condition: disagreement with the model, gaps, 2D confidence
noise        heteroscedastic aleatoric variance (whole-hand shift + articulation), fitted on residuals
posterior    γ² = Laplace + noise; the stored file, bound to the refiner weights it was fitted for
fit          fitting both post hoc on synthetic training data
propagate    Algorithm 1 on windows; sequence: over whole tracks, and the input's error through the refiner
estimate     the per-frame estimate's uncertainty (features, log-linear model, calibration file, sampling)
calibration  nominal radii, coverage, RMS ratios and AUSE: how well maps describe real errors
maps         joints, vertices (skinning linearisation), forces (eq. 17)
heatmap      joints x time PNG
See docs/variance.md.
"""
