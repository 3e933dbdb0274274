//! Whose fault a failure is: the caller's, or the provider's.

use std::error::Error as StdError;

use chrysalis_services::ProviderError;

use crate::retry::error::last_error;

/// The request itself is at fault (a 400-type refusal): another provider
/// would refuse it too, and it says nothing about this provider's health.
pub fn is_client_error(error: &(dyn StdError + 'static)) -> bool {
    last_error(error)
        .downcast_ref::<ProviderError>()
        .is_some_and(ProviderError::is_client_error)
}

/// The provider cannot do what the request asks (nothing was sent); another
/// provider may, and it says nothing about this provider's health.
pub fn is_unsupported(error: &(dyn StdError + 'static)) -> bool {
    last_error(error)
        .downcast_ref::<ProviderError>()
        .is_some_and(ProviderError::is_unsupported)
}
