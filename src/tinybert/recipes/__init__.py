"""Recipes: one module per training command, thin wiring of the layers below.

Each reads like a torchtune recipe: set up (data, teacher, student, objective), then train with
the one loop (`tinybert.train.Trainer`), which also resumes and skips finished stages.

    finetune.py         model dir -> <output_dir>/teacher/{best,final}
    task_distill.py     teacher -> <output_dir>/student/intermediate/final
                                -> <output_dir>/student/prediction/{best,final}
    general_distill.py  teacher + corpus -> <output_dir>/general/final (a bare encoder)
    init_model.py       vocabulary -> a random BERT to fine-tune from scratch
"""
