"""modules/config.py: every flag declared once with its role, presets in one place, the docs generated from it."""
import pytest

from conftest import REPO_ROOT
from modules.config import (FLAGS, PRESETS, ROLES, FlagError, check_args, get_args_parser, get_test_parser, parse_args,
                            restart_args, roles_markdown)


def test_every_flag_is_declared_once_with_help_and_a_role():
    dests = [flag.dest for flag in FLAGS]
    assert len(dests) == len(set(dests))
    for flag in FLAGS:
        assert flag.kwargs.get('help'), flag.names
        assert flag.role in ('changes results', 'safe to change on resume', 'evaluation only'), flag.names


def test_presets_set_only_declared_flags_and_the_command_line_wins():
    for name, values in PRESETS.items():
        assert set(values) <= set(ROLES), (name, set(values) - set(ROLES))
    args = parse_args(get_args_parser(), ['--preset', 'demo', '--num_epoch', '2'])
    assert args.num_epoch == 2 and args.K_train == PRESETS['demo']['K_train']


def test_the_configuration_page_shows_the_roles_as_declared():
    """docs/configuration.md's tables are python -m modules.config --roles: regenerate them after changing FLAGS."""
    page = (REPO_ROOT / 'docs' / 'configuration.md').read_text()
    assert roles_markdown() in page


def test_coco171_sets_the_cluster_counts_to_the_class_count():
    """--coco_classes 171: K_train and K_test default to the evaluated classes, over the default 27 and a
    preset's value; K flags given still win; the 27 classes keep the paper's K."""
    def ks(*argv):
        args = parse_args(get_args_parser(), list(argv))
        return args.K_train, args.K_test

    assert ks() == (27, 27) and ks('--preset', 'paper') == (27, 27)
    assert ks('--coco_classes', '171') == (171, 171)
    assert ks('--coco_classes', '171', '--preset', 'paper') == (171, 171)
    assert ks('--coco_classes', '171', '--stuff') == (91, 91) and ks('--coco_classes', '171', '--thing') == (80, 80)
    assert ks('--coco_classes', '171', '--preset', 'tiny') == (91, 91)  # the tiny preset evaluates stuff only
    assert ks('--coco_classes', '171', '--K_train', '300') == (300, 171)
    assert parse_args(get_test_parser(), ['--coco_classes', '171']).K_test == 171


def test_restart_with_a_preset_and_coco171_keeps_the_runs_k(tmp_path):
    """The preset's K 27 is not taken as given when --coco_classes 171 replaces it: no conflict on restart."""
    argv = ['--preset', 'paper', '--coco_classes', '171', '--restart']
    args = parse_args(get_args_parser(), argv)
    recorded = dict(vars(parse_args(get_args_parser(), ['--preset', 'paper', '--coco_classes', '171'])))
    merged, conflicts, _ = restart_args(args, argv, recorded)
    assert conflicts == [] and merged.K_train == 171
    _, conflicts, _ = restart_args(args, argv, dict(recorded, coco_classes=27, K_train=27, K_test=27))
    assert ('coco_classes', 171, 27) in conflicts


@pytest.mark.parametrize('argv', [['--dataset', 'cityscapes'], ['--cityscapes'],
                                  ['--dataset', 'folder', '--data_root', 'x']])
def test_coco_classes_is_for_cocostuff_only(argv):
    with pytest.raises(FlagError, match='--coco_classes 171') as info:
        check_args(parse_args(get_args_parser(), [*argv, '--coco_classes', '171']))
    assert '\n' not in str(info.value)
