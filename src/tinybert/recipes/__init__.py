"""Recipes: one module per command that trains or writes data, thin wiring of the layers below.

Each reads top to bottom, like a torchtune recipe: the run context (`train.context`), the models
(`distill.student.load_teacher`, `build_student`), the task's data checked once against them
(`data.task_data.load_training_data`: metric, labels, positions, vocabulary), then each stage
with the one loop (`tinybert.train.Trainer`), which saves, resumes and skips finished stages.

    finetune.py         model dir -> <output_dir>/teacher/{best,final}
    task_distill.py     teacher -> <output_dir>/student/intermediate/final
                                -> <output_dir>/student/prediction/{best,final}
    general_distill.py  teacher + corpus -> <output_dir>/general/final (a bare encoder)
    augment.py          the task's train split -> <output_dir>/augmented/<train file>
    init_model.py       vocabulary -> a random BERT to fine-tune from scratch
    common.py           what they share: what defines a stage (for resume), dev evaluation

The commands themselves (their options, and their place in `tinybert run`) are registered in
tinybert.pipeline; docs/development/architecture.md maps every module.
"""
