"""A tuspy upload, resumable across processes (its URL kept in a TinyDB file).

python tus_upload.py ENDPOINT FILE URL_STORE → prints the upload's URL when done.
"""

import sys

from tusclient import client
from tusclient.storage.filestorage import FileStorage

endpoint, path, store = sys.argv[1:4]
uploader = client.TusClient(endpoint).uploader(
    path,
    chunk_size=256 * 1024,
    upload_checksum=True,  # sha1 of every chunk: the server checks each one
    store_url=True,
    url_storage=FileStorage(store),
    metadata={"filename": "из-tuspy.bin"},
)
uploader.upload()
print(uploader.url)
