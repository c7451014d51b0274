"""The settings layer: every flag of the scripts (flags.py: the table with roles and scopes), the
presets (presets.py), the parsers built from the table (parsers.py), the checks of ranges and
combinations (checks.py), the translation of the parsed flags into typed settings
(from_args.py, settings.py), --restart's comparison of flags with a run's record
(restart.py) and the memory checks before any work (memory.py). It sits above modules/ and
data/ (it imports their settings types and choices) and below the entry scripts; modules/,
data/ and utils/ import nothing from it."""
# The names the entry scripts, tools and tests use, importable from the package itself.
from config.checks import check_args, check_label_set, feature_stride, vit_head
from config.flags import EVAL_ONLY, FLAGS, RESULT, RESUME_SAFE, ROLES, Flag, FlagError, roles_markdown
from config.from_args import (
                              augment_config,
                              checkpoint_resolution,
                              data_root_line,
                              data_settings,
                              default_run_name,
                              eval_config,
                              eval_settings,
                              evaluated_classes,
                              evaluated_groups,
                              invariance_settings,
                              kmeans_settings,
                              predict_output,
                              predict_settings,
                              predict_target,
                              probe_settings,
                              recorded_data,
                              recorded_val_data,
                              resolve_transform_lists,
                              settings_from_args,
                              test_output,
                              test_settings,
                              test_target,
                              trained_view_sizes,
                              visualize_checkpoint,
                              visualize_settings,
)
from config.memory import evaluation_memory, training_memory
from config.parsers import (
                              Parser,
                              class_count_defaults,
                              fit_defaults_to_network,
                              get_args_parser,
                              get_predict_parser,
                              get_test_parser,
                              given_flags,
                              parse_args,
)
from config.presets import DEMO_SETS, PRESETS, preset_defaults
from config.restart import INVOCATION_FLAGS, resolve_restart, restart_args
from config.settings import (
                              METRICS_NAME,
                              InvarianceSettings,
                              ModelSettings,
                              OptimSettings,
                              PredictTarget,
                              RunSettings,
                              TestSettings,
                              TestTarget,
                              TrainSettings,
                              VisualizeSettings,
)

# The public names: what `from config import NAME` offers.
__all__ = [
    "augment_config", "check_args", "check_label_set", "checkpoint_resolution", "class_count_defaults",
    "data_root_line", "data_settings", "default_run_name", "DEMO_SETS", "eval_config", "EVAL_ONLY", "eval_settings",
    "evaluated_classes", "evaluated_groups", "evaluation_memory", "feature_stride", "fit_defaults_to_network",
    "Flag", "FlagError", "FLAGS", "get_args_parser", "get_predict_parser", "get_test_parser", "given_flags",
    "invariance_settings", "InvarianceSettings", "INVOCATION_FLAGS", "kmeans_settings", "METRICS_NAME",
    "ModelSettings", "OptimSettings", "parse_args", "Parser", "predict_output", "predict_settings",
    "predict_target", "PredictTarget", "preset_defaults", "PRESETS", "probe_settings", "recorded_data",
    "recorded_val_data", "resolve_restart", "resolve_transform_lists", "restart_args", "RESULT", "RESUME_SAFE",
    "ROLES", "roles_markdown", "RunSettings", "settings_from_args", "test_output", "test_settings", "test_target",
    "TestSettings", "TestTarget", "trained_view_sizes", "training_memory", "TrainSettings", "visualize_checkpoint",
    "visualize_settings", "VisualizeSettings", "vit_head",
]
