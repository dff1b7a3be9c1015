"""tinybert.distill: TinyBERT's method, and nothing else.

losses.py      attention, hidden-state, soft cross-entropy losses (eqs. 7-10 of the paper)
mapping.py     which teacher layer each student layer learns from
projection.py  the learned student -> teacher width projection
objectives.py  the per-stage losses the training loop runs (supervised, phase 1, phase 2)
student.py     loading (and freezing) the teacher, building the student
"""
