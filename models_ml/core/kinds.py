"""Value kinds: how a column's type is carried outside the warehouse (a request field, an online-store
value). Shared by the request schema the registry publishes and the online stores, so both agree."""

from __future__ import annotations

import pyarrow as pa

def kind_of(data_type: pa.DataType) -> str:
    """The storage kind of an Arrow type."""
    if pa.types.is_boolean(data_type):
        return "bool"
    if pa.types.is_integer(data_type):
        return "int"
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return "float"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "str"
    if pa.types.is_dictionary(data_type):
        return kind_of(data_type.value_type)
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    if pa.types.is_date(data_type):
        return "date"
    return "json"
