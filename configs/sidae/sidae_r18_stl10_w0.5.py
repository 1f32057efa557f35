# SidAE on STL-10 with w = 0.5, the value the caption of the paper's Table 1 gives (its
# text says 0.25 for STL-10, the default of sidae_r18_stl10.py). Otherwise identical.
_base_ = ['./sidae_r18_stl10.py']
model = dict(w=0.5)
