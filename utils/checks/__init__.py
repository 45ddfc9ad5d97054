"""Exercise checkers: specific feedback (what is wrong, where, what to look at), never just "wrong".

One module per notebook (``nb01`` … ``nb07``, in course order) and :mod:`utils.checks.feedback`, the one
protocol they share. Every exercise has ``<name>_problems(...)`` (the list of problems; empty = correct; the
tests call it) and ``check_<name>(...)`` (prints the verdict, returns True/False). Notebooks import from here:
``from utils.checks import check_x``.
"""
from .feedback import NotAttempted, yours_or_reference
from .nb01 import (LABEL_BUILDERS, check_label_diagnosis, check_prompt_mask, label_diagnosis_problems,
                   prompt_mask_problems)
from .nb02 import (FILTER_CASES, FILTER_OUTCOMES, FORUM_ROWS, check_filter_diagnosis, check_forum_converter,
                   filter_case_judgements, filter_case_outcomes, filter_case_removals, filter_diagnosis_problems,
                   forum_converter_problems)
from .nb03 import (NEVER_STOPS_TEMPLATE, TOY_NEXT_TOKEN, TOY_TEMPERATURE, TOY_TOP_P, assistant_mask_problems,
                   check_assistant_mask, check_decoding_prediction, check_last_turn_template, check_never_stops,
                   decoding_prediction_answers, decoding_prediction_problems, last_turn_template_problems,
                   never_stops_problems)
from .nb04 import (check_schedule_match, check_truncation_prediction, schedule_match_problems,
                   truncation_prediction_problems)
from .nb05 import (MEMORY_TOLERANCE, add_memory_savers_reference, check_lora_config, check_memory_prediction,
                   check_memory_savers, check_param_count, check_precision_choice, check_save_reload,
                   check_static_memory, check_validation_loss, count_params_reference, forward_end_parts,
                   lora_config_problems, lora_config_reference, memory_prediction_problems, memory_savers_problems,
                   param_count_problems, precision_choice_problems, save_and_reload_reference, save_reload_problems,
                   static_memory_problems, static_memory_reference, validation_loss_problems,
                   validation_loss_reference)
from .nb06 import (FAILS_ABOVE, RUN_NAMES, accumulate_reference, accumulation_problems, assert_finite_reference,
                   check_accumulation, check_clip, check_finite_guard, check_flops, check_group_norms,
                   check_loss_scale, check_lr_schedule, check_run_prediction, clip_problems, clip_reference,
                   finite_guard_problems, flops_problems, group_norm_problems, group_norms_reference,
                   loss_scale_problems, lr_schedule_problems, lr_schedule_reference, next_loss_scale_reference,
                   param_grad_norms, run_prediction_problems)
from .nb07 import (bt_loss_problems, check_bt_loss, check_dpo_loss, check_ppo_clip, dpo_loss_problems,
                   ppo_clip_problems)
