# mlff2d: machine-learned force fields for 2D materials (see README.md).
# The campaign, stage by stage; each stage is one file in workflow/rules/ and one module of
# the mlff2d package (workflow/mlff2d/), called through its command line.
import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, f"{workflow.basedir}/workflow")
from mlff2d.config import validate_config  # noqa: E402
from mlff2d.slurm_profile import check_filled  # noqa: E402

# a profile with <placeholders> left (profiles/slurm as shipped) stops here, before any submission
check_filled(workflow.resource_settings)


# config/config.yaml is the default; a --configfile replaces it (never merged into it).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


validate_config(config)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data_helpers.smk"
include: "workflow/rules/relax_helpers.smk"
include: "workflow/rules/summary_helpers.smk"
include: "workflow/rules/report_helpers.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/uff.smk"
include: "workflow/rules/relax.smk"
include: "workflow/rules/alloys.smk"
include: "workflow/rules/formation.smk"
include: "workflow/rules/repeats.smk"
include: "workflow/rules/structure_maps.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/demo.smk"


localrules:
    all,
    data,
    tables,
    ptables,
    alloy_tables,
    formation,
    formation_report,
    diagnostics,
    novelty,
    novelty_table,
    repeat_table,


rule all:
    input:
        all_targets(),
    default_target: True


onstart:
    write_campaign_provenance()


onsuccess:
    print(campaign_summary())
