"""Variance of the refined motion (PAD-Hand §3.4): a last-layer Laplace posterior of the refiner's head,
carried through the reverse diffusion (Algorithm 1), mapped to joints, mesh vertices and forces.

laplace      closed-form last-layer Laplace (GGN = feature outer products, evidence-chosen prior, noise head)
fit          fitting it post hoc on synthetic training data
posterior    the stored posterior file, bound to the refiner weights it was fitted for
propagate    Algorithm 1 on windows; sequence: over whole tracks
maps         joints, vertices (skinning linearisation), forces (eq. 17)
heatmap      joints x time PNG
See docs/variance.md.
"""
