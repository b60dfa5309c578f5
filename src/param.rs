//! Parameters that know whether they are trained, and modules that list them by their official key.
//!
//! dfdx 0.13 has no per-parameter `requires_grad`: its `Linear` always computes a weight gradient.
//! Here every parameter carries a `trainable` flag, and our ops ([`crate::ops`]) read it: a frozen
//! weight gets no gradient buffer and no weight-gradient GEMM. Modules name their parameters by the
//! official checkpoint keys (`transformer.resblocks.3.attn.in_proj_weight`), so loading a released
//! checkpoint, counting parameters and listing the trainable set are all one walk over [`Params`].

use std::sync::Arc;

use dfdx::prelude::*;

use crate::device::{host, KitDevice, Real};

/// One parameter tensor.
#[derive(Clone, Debug)]
pub struct Param<S: Shape, E: Dtype, D: Storage<E>> {
    pub value: Tensor<S, E, D>,
    /// Trained (gets gradients and optimizer updates) or frozen.
    pub trainable: bool,
    /// The shape under which the official checkpoint stores this tensor. It can differ from our
    /// layout: `conv1.weight` is (C, 3, P, P) there and a (C, 3·P·P) matrix here.
    pub stored_shape: Vec<usize>,
}

impl<S: Shape, E: Real, D: KitDevice<E>> Param<S, E, D> {
    /// A parameter whose stored shape is its own shape.
    pub fn new(value: Tensor<S, E, D>, trainable: bool) -> Self {
        let stored_shape = value.shape().concrete().into();
        Self { value, trainable, stored_shape }
    }

    /// A parameter stored under a different (same-size) shape in official checkpoints.
    pub fn stored_as(value: Tensor<S, E, D>, trainable: bool, stored_shape: &[usize]) -> Self {
        assert_eq!(
            stored_shape.iter().product::<usize>(),
            value.shape().num_elements(),
            "stored shape {stored_shape:?} does not hold {:?}",
            value.shape().concrete()
        );
        Self { value, trainable, stored_shape: stored_shape.to_vec() }
    }

    pub fn numel(&self) -> usize {
        self.value.shape().num_elements()
    }

    /// The values in row-major order.
    pub fn to_vec(&self) -> Vec<E> {
        host(&self.value)
    }

    /// The values in row-major order (one copy, as [`Param::to_vec`]), to share between the forward
    /// and backward passes of an op. (Keeping this copy with the parameter instead, made once for a
    /// frozen weight, measured no faster on the ViT-B/16 block and a training step, and cost one
    /// more copy of every weight in memory: +346 MiB for ViT-B/16.)
    pub fn host(&self) -> Arc<Vec<E>> {
        Arc::new(self.to_vec())
    }

    /// Where an op adds this parameter's gradient, if it trains: the tensor (shared, not copied),
    /// whose id keys the gradient.
    pub fn grad_key(&self) -> Option<Tensor<S, E, D>> {
        self.trainable.then(|| self.value.clone())
    }

    /// Overwrites the values (same number of elements, row-major).
    pub fn set(&mut self, values: &[E]) {
        assert_eq!(values.len(), self.numel(), "wrong number of values for a parameter");
        self.value.copy_from(values);
    }
}

/// Receives each parameter of a module tree, with its full dotted key.
pub trait Visitor<E: Real, D: KitDevice<E>> {
    fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>);
}

/// Receives each parameter mutably, with its full dotted key.
pub trait VisitorMut<E: Real, D: KitDevice<E>> {
    fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>);
}

/// A module that can list its parameters under their official keys.
///
/// Implementations call [`Walk::param`] for own tensors and [`Walk::module`] for children; the
/// walker joins the names with dots.
pub trait Params<E: Real, D: KitDevice<E>> {
    fn walk<W: Walk<E, D>>(&self, w: &mut W);
    fn walk_mut<W: WalkMut<E, D>>(&mut self, w: &mut W);
}

/// The path-keeping side of an immutable walk.
pub trait Walk<E: Real, D: KitDevice<E>>: Sized {
    fn param<S: Shape>(&mut self, name: &str, p: &Param<S, E, D>);
    fn module<M: Params<E, D>>(&mut self, name: &str, m: &M);
}

/// The path-keeping side of a mutable walk.
pub trait WalkMut<E: Real, D: KitDevice<E>>: Sized {
    fn param<S: Shape>(&mut self, name: &str, p: &mut Param<S, E, D>);
    fn module<M: Params<E, D>>(&mut self, name: &str, m: &mut M);
}

/// Joins key segments; empty segments (a module walked under its parent's name) vanish.
fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{name}"),
    }
}

struct Walker<'v, V> {
    prefix: String,
    visitor: &'v mut V,
}

impl<'v, E: Real, D: KitDevice<E>, V: Visitor<E, D>> Walk<E, D> for Walker<'v, V> {
    fn param<S: Shape>(&mut self, name: &str, p: &Param<S, E, D>) {
        self.visitor.param(&join(&self.prefix, name), p);
    }
    fn module<M: Params<E, D>>(&mut self, name: &str, m: &M) {
        let outer = std::mem::take(&mut self.prefix);
        self.prefix = join(&outer, name);
        m.walk(self);
        self.prefix = outer;
    }
}

impl<'v, E: Real, D: KitDevice<E>, V: VisitorMut<E, D>> WalkMut<E, D> for Walker<'v, V> {
    fn param<S: Shape>(&mut self, name: &str, p: &mut Param<S, E, D>) {
        self.visitor.param(&join(&self.prefix, name), p);
    }
    fn module<M: Params<E, D>>(&mut self, name: &str, m: &mut M) {
        let outer = std::mem::take(&mut self.prefix);
        self.prefix = join(&outer, name);
        m.walk_mut(self);
        self.prefix = outer;
    }
}

/// Visits every parameter of `m` with its full key.
pub fn visit<E: Real, D: KitDevice<E>, M: Params<E, D> + ?Sized, V: Visitor<E, D>>(m: &M, v: &mut V) {
    m.walk(&mut Walker { prefix: String::new(), visitor: v });
}

/// Visits every parameter of `m` mutably with its full key.
pub fn visit_mut<E: Real, D: KitDevice<E>, M: Params<E, D>, V: VisitorMut<E, D>>(m: &mut M, v: &mut V) {
    m.walk_mut(&mut Walker { prefix: String::new(), visitor: v });
}

/// One line of a parameter listing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamInfo {
    pub key: String,
    pub stored_shape: Vec<usize>,
    pub numel: usize,
    pub trainable: bool,
}

/// Every parameter of `m`, in module order.
pub fn param_list<E: Real, D: KitDevice<E>, M: Params<E, D> + ?Sized>(m: &M) -> Vec<ParamInfo> {
    struct Lister(Vec<ParamInfo>);
    impl<E: Real, D: KitDevice<E>> Visitor<E, D> for Lister {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            self.0.push(ParamInfo {
                key: key.to_string(),
                stored_shape: p.stored_shape.clone(),
                numel: p.numel(),
                trainable: p.trainable,
            });
        }
    }
    let mut l = Lister(Vec::new());
    visit(m, &mut l);
    l.0
}

/// The parameters whose key satisfies `pred`, in module order: (key, stored shape, row-major values).
pub fn values_of<E: Real, D: KitDevice<E>, M: Params<E, D> + ?Sized>(
    m: &M,
    pred: impl Fn(&str) -> bool,
) -> Vec<(String, Vec<usize>, Vec<E>)> {
    struct Get<F, E>(F, Vec<(String, Vec<usize>, Vec<E>)>);
    impl<E: Real, D: KitDevice<E>, F: Fn(&str) -> bool> Visitor<E, D> for Get<F, E> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            if (self.0)(key) {
                self.1.push((key.to_string(), p.stored_shape.clone(), p.to_vec()));
            }
        }
    }
    let mut g = Get(pred, Vec::new());
    visit(m, &mut g);
    g.1
}

/// Overwrites the parameter `key` with `values` (row-major); the error names the key when there is
/// no such parameter or the number of values differs.
pub fn set_values<E: Real, D: KitDevice<E>, M: Params<E, D>>(m: &mut M, key: &str, values: &[E]) -> Result<(), String> {
    struct Set<'a, E>(&'a str, &'a [E], Option<Result<(), String>>);
    impl<'a, E: Real, D: KitDevice<E>> VisitorMut<E, D> for Set<'a, E> {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
            if key == self.0 {
                self.2 = Some(if p.numel() == self.1.len() {
                    p.set(self.1);
                    Ok(())
                } else {
                    Err(format!("`{key}` has {} values, {} given", p.numel(), self.1.len()))
                });
            }
        }
    }
    let mut s = Set(key, values, None);
    visit_mut(m, &mut s);
    s.2.unwrap_or_else(|| Err(format!("the model has no parameter `{key}`")))
}

/// Marks every parameter whose key satisfies `pred` as trainable, and every other one frozen.
pub fn set_trainable<E: Real, D: KitDevice<E>, M: Params<E, D>>(m: &mut M, pred: impl Fn(&str) -> bool) {
    struct Marker<F>(F);
    impl<E: Real, D: KitDevice<E>, F: Fn(&str) -> bool> VisitorMut<E, D> for Marker<F> {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
            p.trainable = (self.0)(key);
        }
    }
    visit_mut(m, &mut Marker(pred));
}

/// A parameter on its own is a module with one tensor under the module's key, so optional
/// parameters (`Option<Param<..>>`) are walked like optional modules.
impl<S: Shape, E: Real, D: KitDevice<E>> Params<E, D> for Param<S, E, D> {
    fn walk<W: Walk<E, D>>(&self, w: &mut W) {
        w.param("", self);
    }
    fn walk_mut<W: WalkMut<E, D>>(&mut self, w: &mut W) {
        w.param("", self);
    }
}

impl<E: Real, D: KitDevice<E>, M: Params<E, D>> Params<E, D> for Vec<M> {
    fn walk<W: Walk<E, D>>(&self, w: &mut W) {
        for (i, m) in self.iter().enumerate() {
            w.module(&i.to_string(), m);
        }
    }
    fn walk_mut<W: WalkMut<E, D>>(&mut self, w: &mut W) {
        for (i, m) in self.iter_mut().enumerate() {
            w.module(&i.to_string(), m);
        }
    }
}

impl<E: Real, D: KitDevice<E>, M: Params<E, D>> Params<E, D> for Option<M> {
    fn walk<W: Walk<E, D>>(&self, w: &mut W) {
        if let Some(m) = self {
            m.walk(w);
        }
    }
    fn walk_mut<W: WalkMut<E, D>>(&mut self, w: &mut W) {
        if let Some(m) = self {
            m.walk_mut(w);
        }
    }
}

/// Implements [`Params`] for a module, listing its keys once.
///
/// The field form, for structs whose parameters are fields: each entry is `param "key" => field`
/// (a [`Param`]) or `module "key" => field` (anything [`Params`], including `Option`s and `Vec`s; an
/// empty key keeps the child's keys at this level):
///
/// ```ignore
/// impl_params!([const C: usize, E: Real, D: KitDevice<E>] Adapter<C, E, D> {
///     module "fc1" => fc1, module "conv" => conv, module "fc2" => fc2,
/// });
/// ```
///
/// The body form, for enums and optional tensors: one body, written with `r!(place)` where a field
/// is borrowed; the macro expands it once with `&` (for `walk`) and once with `&mut` (`walk_mut`):
///
/// ```ignore
/// impl_params!([E: Real, D: KitDevice<E>] Weights<E, D>, |m, w| {
///     if let Weights::Learned(p) = r!(*m) { w.param("", p) }
/// });
/// ```
///
/// The generics must name the element type `E` and the device `D`.
#[macro_export]
macro_rules! impl_params {
    ([$($g:tt)*] $t:ty { $($kind:ident $key:literal => $field:ident),* $(,)? }) => {
        impl<$($g)*> $crate::param::Params<E, D> for $t {
            fn walk<W: $crate::param::Walk<E, D>>(&self, w: &mut W) {
                $( w.$kind($key, &self.$field); )*
            }
            fn walk_mut<W: $crate::param::WalkMut<E, D>>(&mut self, w: &mut W) {
                $( w.$kind($key, &mut self.$field); )*
            }
        }
    };
    ([$($g:tt)*] $t:ty, |$m:ident, $w:ident| $body:block) => {
        impl<$($g)*> $crate::param::Params<E, D> for $t {
            #[allow(unused_macros)]
            fn walk<W: $crate::param::Walk<E, D>>(&self, $w: &mut W) {
                macro_rules! r {
                    ($place:expr) => {
                        &$place
                    };
                }
                let $m = self;
                $body
            }
            #[allow(unused_macros)]
            fn walk_mut<W: $crate::param::WalkMut<E, D>>(&mut self, $w: &mut W) {
                macro_rules! r {
                    ($place:expr) => {
                        &mut $place
                    };
                }
                let $m = self;
                $body
            }
        }
    };
}
