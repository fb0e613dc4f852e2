"""MRI physics as pure functions on numpy arrays (and torch tensors where noted).

fft: centred orthonormal 2D FFT. operators: multicoil SENSE forward/adjoint and friends.
masks: undersampling patterns. coils: simulated loop-coil sensitivities and a calibration estimate.
"""
