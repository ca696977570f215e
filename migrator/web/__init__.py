"""Django-side helpers shared by the apps' admins and views (CSV downloads). Unlike
migrator.storage, migrator.engine, migrator.acl and migrator.sanitize, this package may
import Django."""
