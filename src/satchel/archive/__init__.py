"""Folder -> archive. The pure engine (``satchel.zipstream``) says which bytes go where;
``manifest`` plans an archive, ``sender`` streams its byte ranges, ``service`` ties them
to the folders (``satchel.storage.base.Folders``) and the CRC cache."""
