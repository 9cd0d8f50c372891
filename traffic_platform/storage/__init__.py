"""Storage: the database (tables, migrations, repository) and the object store (S3 or a directory).

Heavy or optional imports stay in the submodules; import what you need from them::

    from traffic_platform.storage.database import make_engine, upgrade
    from traffic_platform.storage.repository import Repository
    from traffic_platform.storage.objectstore import open_object_store
    from traffic_platform.storage import keys
"""
