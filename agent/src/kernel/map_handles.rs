//! Taking the kernel object's maps out of it, typed, with errors that name
//! the map: shared by the drop path (`programs`) and the socket hooks
//! (`sockets`).

use aya::{
    Ebpf,
    maps::{Map, MapData},
};

use super::Error;

/// Takes map `name` out of the object as a `T`.
pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, Error>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| {
        map_error(
            name,
            aya::maps::MapError::InvalidName {
                name: name.to_owned(),
            },
        )
    })?;
    T::try_from(map).map_err(|source| map_error(name, source))
}

/// Takes array map `name` out of the object as raw map data.
pub(super) fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, Error> {
    match ebpf.take_map(name) {
        Some(Map::Array(data)) => Ok(data),
        _ => Err(map_error(
            name,
            aya::maps::MapError::InvalidName {
                name: name.to_owned(),
            },
        )),
    }
}

/// A map error naming the map.
pub(super) fn map_error(map: &'static str, source: aya::maps::MapError) -> Error {
    Error::Map {
        map,
        source: Box::new(source),
    }
}
