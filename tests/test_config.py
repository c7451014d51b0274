"""config/: every flag declared once with its role, presets in one place, the docs generated from it."""
from conftest import REPO_ROOT
from config import FLAGS, PRESETS, ROLES, get_args_parser, parse_args, roles_markdown


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
    """docs/configuration.md's tables are python -m config --roles: regenerate them after changing FLAGS."""
    page = (REPO_ROOT / 'docs' / 'configuration.md').read_text()
    assert roles_markdown() in page
