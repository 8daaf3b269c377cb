//! The list and map macros (`all`, `exists`, `exists_one`, `filter`, `map` with two
//! or three arguments), which the CEL parser expands into comprehensions: a range to
//! iterate, a variable bound to each element (each key of a map), an accumulator
//! with its start, a condition to go on, a step and a result. They are compiled as
//! written there, with the two bound names in scope; the evaluator runs them with a
//! scope that lends the bound values to the expressions inside.

use cel::common::ast::{ComprehensionExpr, IdedExpr};

use super::{Compiler, ExprError, Node, Type};

/// A comprehension, compiled.
#[derive(Clone, Debug)]
pub(crate) struct Comprehension {
    pub(super) range: Node,
    pub(super) iter: u16,
    pub(super) accu: u16,
    pub(super) init: Node,
    pub(super) cond: Node,
    pub(super) step: Node,
    pub(super) result: Node,
}

/// A name a comprehension binds, while its body is compiled.
#[derive(Clone, Debug)]
pub(super) struct Binding {
    pub(super) name: String,
    pub(super) slot: u16,
    pub(super) ty: Type,
}

impl Compiler<'_> {
    pub(super) fn comprehension(
        &self,
        e: &IdedExpr,
        c: &ComprehensionExpr,
    ) -> Result<(Node, Type), ExprError> {
        if c.iter_var2.is_some() {
            return Err(self.error(e, "macros bind one variable"));
        }
        let (range, range_ty) = self.compile(&c.iter_range)?;
        let element = match range_ty {
            Type::List | Type::StrMap | Type::Map => Type::String,
            Type::Dyn => Type::Dyn,
            other => {
                return Err(self.error(&c.iter_range, format!("cannot iterate over a {other}")))
            }
        };
        let (init, init_ty) = self.compile(&c.accu_init)?;
        // A list accumulator (map, filter) takes values of any type.
        let accu_ty = if init_ty == Type::List {
            Type::Dyn
        } else {
            init_ty
        };
        let iter = self.bind(&c.iter_var, element);
        let accu = self.bind(&c.accu_var, accu_ty);
        let body = (|| {
            let cond = self.typed(&c.loop_cond, Type::Bool, "a macro's condition")?;
            let (step, _) = self.compile(&c.loop_step)?;
            let (result, result_ty) = self.compile(&c.result)?;
            Ok((cond, step, result, result_ty))
        })();
        self.unbind(2);
        let (cond, step, result, result_ty) = body?;
        let node = Node::Comprehension(Box::new(Comprehension {
            range,
            iter,
            accu,
            init,
            cond,
            step,
            result,
        }));
        Ok((node, result_ty))
    }

    fn bind(&self, name: &str, ty: Type) -> u16 {
        let slot = self.next_slot.get();
        self.next_slot.set(slot.wrapping_add(1));
        self.scope.borrow_mut().push(Binding {
            name: name.to_string(),
            slot,
            ty,
        });
        slot
    }

    fn unbind(&self, n: usize) {
        let mut scope = self.scope.borrow_mut();
        let keep = scope.len().saturating_sub(n);
        scope.truncate(keep);
    }

    /// The binding `name` names in the macros being compiled, innermost first.
    pub(super) fn bound(&self, name: &str) -> Option<Binding> {
        self.scope
            .borrow()
            .iter()
            .rev()
            .find(|b| b.name == name)
            .cloned()
    }
}
