"""Deployment artefacts for AWS: the two Lambda packages and the SageMaker ``model.tar.gz``.

Built by ``traffic-platform deploy build``; reproducible (pinned wheels, sorted entries,
fixed timestamps and modes), so the same source gives byte-identical archives.
"""
